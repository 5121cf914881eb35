"""Protocol: round trip, zero-copy decode, and every validation rule."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy.protocol import (
    DTYPES,
    PROTOCOL_VERSION,
    Message,
    ProtocolError,
    ProtocolLimits,
    WireArrays,
    decode,
    encode,
)


def _header(**over):
    h = {"v": PROTOCOL_VERSION, "type": "act", "seq": 1, "t": 0, "reply_to": None, "arrays": [], "meta": {}}
    h.update(over)
    return msgpack.packb(h)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_round_trip_every_dtype(dtype):
    rng = np.random.default_rng(0)
    a = (rng.random((3, 4, 2)) * 100).astype(dtype)
    msg = Message("observe", seq=7, arrays={"x": a, "scalar": np.array(3.5, np.float32)}, meta={"k": [1, "a"]},
                  reply_to=6)
    out = decode([bytes(memoryview(f)) if not isinstance(f, bytes) else f for f in encode(msg)])
    assert (out.type, out.seq, out.reply_to, out.meta) == ("observe", 7, 6, {"k": [1, "a"]})
    np.testing.assert_array_equal(out.arrays["x"], a)
    assert out.arrays["x"].dtype == a.dtype and out.arrays["scalar"].shape == ()
    assert list(out.arrays) == ["x", "scalar"]
    assert out.t > 0


def test_non_contiguous_and_big_endian_are_converted():
    a = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]
    out = decode([bytes(f) for f in encode(Message("act", arrays={"a": a}))])
    np.testing.assert_array_equal(out.arrays["a"], a)


def test_decode_is_zero_copy_and_read_only():
    frames = encode(Message("act", arrays={"a": np.arange(1000, dtype=np.float32)}))
    buf = bytearray(bytes(frames[1]))
    out = decode([frames[0], buf])
    assert np.shares_memory(out.arrays["a"], np.frombuffer(buf, np.uint8))
    assert not out.arrays["a"].flags.writeable


def test_wire_arrays_encode_like_the_dict():
    arrays = {"img": np.arange(224 * 224 * 3, dtype=np.uint8).reshape(224, 224, 3),
              "view": np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2], "scalar": np.array(3.5, np.float32)}
    wire = WireArrays(arrays)
    for sent in (arrays, wire, wire):  # a WireArrays encodes again and again
        out = decode([f if isinstance(f, bytes) else bytes(memoryview(f)) for f in
                      encode(Message("observe", seq=2, arrays=sent, meta={"k": 1}, reply_to=1))])
        assert list(out.arrays) == ["img", "view", "scalar"] and out.meta == {"k": 1} and out.reply_to == 1
        for name, a in arrays.items():
            np.testing.assert_array_equal(out.arrays[name], a)
            assert out.arrays[name].shape == a.shape and out.arrays[name].dtype == a.dtype.newbyteorder("<")
    with pytest.raises(ValueError, match="whitelist"):
        WireArrays({"a": np.array([object()])})


def test_encode_rejects_object_dtype_and_unknown_type():
    with pytest.raises(ValueError, match="whitelist"):
        encode(Message("act", arrays={"a": np.array([object()])}))
    with pytest.raises(ValueError, match="message type"):
        encode(Message("pickle"))


ARR = {"name": "a", "dtype": "float32", "shape": [7]}


@pytest.mark.parametrize(
    "frames, code",
    [
        ([], "bad_header"),
        ([b"\xc1garbage"], "bad_header"),
        ([msgpack.packb([1, 2])], "bad_header"),
        ([_header(v=99)], "bad_version"),
        ([_header(type="unpickle_me")], "bad_type"),
        ([_header(seq="1")], "bad_header"),
        ([_header(seq=True)], "bad_header"),
        ([_header(meta=[])], "bad_header"),
        ([_header(reply_to="x")], "bad_header"),
        ([_header(arrays=[ARR])], "bad_array"),  # declared but missing frame
        ([_header(), b"1234"], "bad_array"),  # extra frame
        ([_header(arrays=[{**ARR, "dtype": "object"}]), b"\0" * 28], "bad_array"),
        ([_header(arrays=[{**ARR, "dtype": "O"}]), b"\0" * 28], "bad_array"),
        ([_header(arrays=[{**ARR, "shape": [8]}]), b"\0" * 28], "bad_array"),
        ([_header(arrays=[{**ARR, "shape": [-1]}]), b"\0" * 28], "bad_array"),
        ([_header(arrays=[{**ARR, "shape": [2**62, 2**62]}]), b"\0" * 28], "bad_array"),
        ([_header(arrays=[{**ARR, "shape": [1] * 9}]), b"\0" * 4], "bad_array"),
        ([_header(arrays=[{**ARR, "name": ""}]), b"\0" * 28], "bad_array"),
        ([_header(arrays=[ARR, ARR]), b"\0" * 28, b"\0" * 28], "bad_array"),  # duplicate name
        ([_header(arrays=["x"]), b"\0"], "bad_array"),
        ([_header(arrays=[ARR] * 17), *[b"\0" * 28] * 17], "too_large"),
        ([b"\x90" + b"\0" * 70000], "too_large"),
        ([msgpack.packb(msgpack.ExtType(1, b"x"))], "bad_header"),
    ],
)
def test_validation_errors(frames, code):
    with pytest.raises(ProtocolError) as e:
        decode(frames)
    assert e.value.code == code


def test_total_size_limit_and_seq_reported():
    limits = ProtocolLimits(max_message_bytes=1000, max_header_bytes=500)
    frames = [_header(seq=42, arrays=[{"name": "a", "dtype": "uint8", "shape": [2000]}]), b"\0" * 2000]
    with pytest.raises(ProtocolError) as e:
        decode(frames, limits)
    assert e.value.code == "too_large" and e.value.seq == 42


def test_limits_validate():
    with pytest.raises(ValueError, match="max_arrays"):
        ProtocolLimits(max_arrays=0)


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_random_bytes_only_raise_protocol_error(frames):
    try:
        decode(frames)
    except ProtocolError:
        pass
