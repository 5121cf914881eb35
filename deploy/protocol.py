"""Wire protocol of the robot bridge: a msgpack header frame plus raw array frames (ZeroMQ multipart).

    frames = encode(Message("observe", seq=3))                  # -> [header bytes, *array buffers]
    sock.send_multipart(frames, copy=False)                      # arrays go out zero-copy
    msg = decode(sock.recv_multipart(copy=False), limits)        # validated; raises ProtocolError

The full specification (message types, fields, error codes, version policy) is docs/protocol.md.
Header (a msgpack map, the first frame):

    {"v": 1, "type": "obs", "seq": 17, "t": <sender monotonic ns>, "reply_to": 16 | None,
     "arrays": [{"name": "agentview", "dtype": "uint8", "shape": [224, 224, 3]}, ...],
     "meta": {...type-specific fields...}}

followed by exactly one frame per array descriptor holding its C-order bytes. Decoding never
unpickles anything and checks, before touching array bytes: the header size, that it is a map with
the right field types, the protocol version, the dtype whitelist, the number of arrays, that each
shape's product times the item size equals the frame's byte length, and the total message size.
Arrays are returned as read-only numpy views onto the received frames (no copy).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

PROTOCOL_VERSION = 1

# Requests a client may send; the bridge answers each with a message of the same type, or "error".
REQUEST_TYPES = frozenset({"hello", "observe", "act", "reset", "heartbeat", "stats"})
MESSAGE_TYPES = REQUEST_TYPES | {"error"}

# Little-endian / byte-order-free dtypes only: what robots and policies exchange. Never "object".
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<") if np.dtype(name).itemsize > 1 else np.dtype(name)
    for name in ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16",
                 "float32", "float64")
}

# Error codes carried in error replies (meta["code"]); docs/protocol.md describes each.
ERROR_CODES = (
    "bad_header",  # not msgpack, not a map, a missing/mistyped field
    "bad_version",  # header "v" differs from PROTOCOL_VERSION
    "bad_type",  # unknown message type, or a reply type sent as a request
    "bad_array",  # dtype not whitelisted, bad shape, byte length mismatch, frame count mismatch
    "too_large",  # header, array count or total bytes over the limits
    "bad_request",  # well-formed message whose content the handler cannot use (missing meta field...)
    "internal",  # the robot raised; the bridge held position and stays up
)


class ProtocolError(ValueError):
    """A message that fails validation; `code` is one of ERROR_CODES, `seq` the sender's seq if readable."""

    def __init__(self, code: str, message: str, seq: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.seq = seq


@dataclass(frozen=True)
class ProtocolLimits:
    """Receive-side limits; the bridge also sets ZMQ_MAXMSGSIZE so a frame over `max_message_bytes`
    drops the connection before it is ever allocated."""

    max_message_bytes: int = 64 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_arrays: int = 16
    max_ndim: int = 8
    max_name_len: int = 64

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_header_bytes", "max_arrays", "max_ndim", "max_name_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"ProtocolLimits.{name}={v!r}: must be a positive int")
        if self.max_header_bytes > self.max_message_bytes:
            raise ValueError(
                f"ProtocolLimits.max_header_bytes={self.max_header_bytes} exceeds "
                f"max_message_bytes={self.max_message_bytes}"
            )


DEFAULT_LIMITS = ProtocolLimits()


@dataclass
class Message:
    """One protocol message. `arrays` keeps insertion order (it is the frame order on the wire)."""

    type: str
    seq: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    reply_to: int | None = None
    t: int = 0  # sender's time.monotonic_ns() at encode; 0 until encoded/decoded


def now_ns() -> int:
    return time.monotonic_ns()


# little-endian dtype -> wire name; lookups by dtype object are ~50x cheaper than dtype.name
_WIRE_NAMES: dict[np.dtype, str] = {dt: name for name, dt in DTYPES.items()}


def encode(msg: Message) -> list[Any]:
    """Message -> [header bytes, *array buffers] for `send_frames` (or `send_multipart`).

    Non-contiguous or big-endian arrays are converted (copied) once; contiguous little-endian
    ones are sent from their own memory, so the caller must not mutate them until sent.
    """
    if msg.type not in MESSAGE_TYPES:
        raise ValueError(f"message type {msg.type!r} not in {sorted(MESSAGE_TYPES)}")
    descs = []
    bufs = []
    for name, arr in msg.arrays.items():
        a = arr if type(arr) is np.ndarray else np.asarray(arr)
        key = _WIRE_NAMES.get(a.dtype)
        if key is None or not a.flags.c_contiguous:
            if a.dtype.name not in DTYPES:
                raise ValueError(f"array {name!r}: dtype {a.dtype} not in the protocol whitelist {sorted(DTYPES)}")
            key = a.dtype.name
            a = np.ascontiguousarray(a, dtype=DTYPES[key])
        descs.append({"name": name, "dtype": key, "shape": a.shape})
        bufs.append(a if a.ndim else a.reshape(1))  # 0-d arrays do not export a buffer
    msg.t = time.monotonic_ns()
    header = {
        "v": PROTOCOL_VERSION,
        "type": msg.type,
        "seq": msg.seq,
        "t": msg.t,
        "reply_to": msg.reply_to,
        "arrays": descs,
        "meta": msg.meta,
    }
    return [msgpack.packb(header, use_bin_type=True), *bufs]


ZERO_COPY_MIN_BYTES = 65536  # below this a copy is cheaper than zmq's zero-copy bookkeeping
_SNDMORE = int(zmq.SNDMORE)


def send_frames(sock: Any, frames: list[Any], flags: int = 0) -> None:
    """send_multipart that copies small frames and hands big ones (images) to zmq zero-copy.

    pyzmq's copy=False costs a Frame object and a release callback per frame, which for a header
    or a 7-float action is far more than copying it; one copy flag for all frames cannot get both right.
    """
    flags = int(flags)  # zmq flag enums: `|` on them goes through enum.__or__ (slow)
    more = flags | _SNDMORE
    last = len(frames) - 1
    for i, f in enumerate(frames):
        n = f.nbytes if type(f) is np.ndarray else len(f)
        sock.send(f, flags if i == last else more, copy=n < ZERO_COPY_MIN_BYTES)


def _frame_bytes(frame: Any) -> memoryview:
    """zmq.Frame (copy=False) or bytes-like -> a byte memoryview without copying."""
    buf = frame.buffer if type(frame) is zmq.Frame else getattr(frame, "buffer", frame)
    v = buf if type(buf) is memoryview else memoryview(buf)
    return v if v.format == "B" and v.ndim == 1 else v.cast("B")


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("bad_header", f"msgpack extension type {code} is not allowed")


def decode(frames: list[Any], limits: ProtocolLimits = DEFAULT_LIMITS) -> Message:
    """Validate and decode [header, *array frames]; raises ProtocolError (never anything else)."""
    if not frames:
        raise ProtocolError("bad_header", "empty message")
    views = [_frame_bytes(f) for f in frames]
    total = sum(v.nbytes for v in views)
    head = views[0]
    if head.nbytes > limits.max_header_bytes:
        raise ProtocolError("too_large", f"header is {head.nbytes} bytes > {limits.max_header_bytes}")
    try:
        h = msgpack.unpackb(head, raw=False, use_list=True, strict_map_key=True, ext_hook=_no_ext)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ProtocolError("bad_header", f"header is not valid msgpack ({type(e).__name__}: {e})") from None
    if not isinstance(h, dict):
        raise ProtocolError("bad_header", f"header must be a map, got {type(h).__name__}")
    seq = h.get("seq")
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    if h.get("v") != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {h.get('v')!r}, this side speaks {PROTOCOL_VERSION}", seq)
    for key, typ in (("type", str), ("seq", int), ("t", int), ("arrays", list), ("meta", dict)):
        if not isinstance(h.get(key), typ) or isinstance(h.get(key), bool):
            raise ProtocolError("bad_header", f"field {key!r} must be {typ.__name__}, got {h.get(key)!r:.80}", seq)
    if h["type"] not in MESSAGE_TYPES:
        raise ProtocolError("bad_type", f"unknown message type {h['type']!r:.40}", seq)
    reply_to = h.get("reply_to")
    if reply_to is not None and (not isinstance(reply_to, int) or isinstance(reply_to, bool)):
        raise ProtocolError("bad_header", f"reply_to must be int or nil, got {reply_to!r:.40}", seq)
    descs = h["arrays"]
    if len(descs) > limits.max_arrays:
        raise ProtocolError("too_large", f"{len(descs)} arrays > max {limits.max_arrays}", seq)
    if len(descs) != len(views) - 1:
        raise ProtocolError("bad_array", f"header declares {len(descs)} arrays but {len(views) - 1} frames follow", seq)
    if total > limits.max_message_bytes:
        raise ProtocolError("too_large", f"message is {total} bytes > {limits.max_message_bytes}", seq)
    arrays: dict[str, np.ndarray] = {}
    for d, view in zip(descs, views[1:], strict=True):
        name, arr = _decode_array(d, view, limits, seq)
        if name in arrays:
            raise ProtocolError("bad_array", f"duplicate array name {name!r}", seq)
        arrays[name] = arr
    return Message(type=h["type"], seq=h["seq"], arrays=arrays, meta=h["meta"], reply_to=reply_to, t=h["t"])


def _decode_array(d: Any, view: memoryview, limits: ProtocolLimits, seq: int | None) -> tuple[str, np.ndarray]:
    if not isinstance(d, dict):
        raise ProtocolError("bad_array", f"array descriptor must be a map, got {type(d).__name__}", seq)
    name, dtype, shape = d.get("name"), d.get("dtype"), d.get("shape")
    if not isinstance(name, str) or not 0 < len(name) <= limits.max_name_len:
        raise ProtocolError("bad_array", f"array name must be a str of 1..{limits.max_name_len} chars", seq)
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ProtocolError("bad_array", f"array {name!r}: dtype {dtype!r:.40} not in {sorted(DTYPES)}", seq)
    if (not isinstance(shape, list) or len(shape) > limits.max_ndim
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape)):
        raise ProtocolError("bad_array", f"array {name!r}: shape {shape!r:.80} must be <= {limits.max_ndim} "
                            "non-negative ints", seq)
    dt = DTYPES[dtype]
    n = math.prod(shape) * dt.itemsize  # python ints: no overflow on hostile shapes
    if n != view.nbytes:
        raise ProtocolError("bad_array", f"array {name!r}: shape {shape} x {dt.itemsize} B = {n} B but the frame "
                            f"holds {view.nbytes} B", seq)
    arr = np.frombuffer(view, dtype=dt).reshape(shape)
    if arr.flags.writeable:  # frames are shared with zmq; views are read-only by contract
        arr.flags.writeable = False
    return name, arr


def error_message(code: str, text: str, reply_to: int | None, seq: int = 0, **meta: Any) -> Message:
    if code not in ERROR_CODES:
        raise ValueError(f"error code {code!r} not in {ERROR_CODES}")
    return Message("error", seq=seq, reply_to=reply_to, meta={"code": code, "message": text, **meta})
