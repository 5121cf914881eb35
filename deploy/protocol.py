"""Wire protocol of the robot bridge: a msgpack header frame plus raw array frames (ZeroMQ multipart).

    frames = encode(Message("observe", seq=3))                  # -> [header bytes, *array buffers]
    send_frames(sock, frames)                                    # images go out zero-copy
    msg = decode(recv_frames(sock), limits)                      # validated; raises ProtocolError

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
A sender that sends the same arrays many times (the bridge's current observation) lays them out once
with `WireArrays` and passes that as `Message.arrays`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq
from zmq.backend import Socket as _BackendSocket

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


@dataclass(slots=True)
class Message:
    """One protocol message. `arrays` keeps insertion order (it is the frame order on the wire); a
    sender may pass a `WireArrays` instead of a dict (decode always returns a dict)."""

    type: str
    seq: int = 0
    arrays: dict[str, np.ndarray] | WireArrays = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    reply_to: int | None = None
    t: int = 0  # sender's time.monotonic_ns() at encode; 0 until encoded/decoded


now_ns = time.monotonic_ns  # the protocol's clock (`t`, `t_obs`, deadlines); an alias, not a wrapper: no extra call


# little-endian dtype -> wire name; lookups by dtype object are ~50x cheaper than dtype.name
_WIRE_NAMES: dict[np.dtype, str] = {dt: name for name, dt in DTYPES.items()}
# one msgpack Packer per thread (a Packer keeps a buffer, so it must not be shared across threads):
# reusing it saves building one per message, which is a third of packb's cost for a small header
_local = threading.local()


def _packer() -> msgpack.Packer:
    p = getattr(_local, "packer", None)
    if p is None:
        p = _local.packer = msgpack.Packer(use_bin_type=True)
    return p


# Frames below this size are copied into the zmq message; bigger ones (camera images) are handed to
# zmq zero-copy. pyzmq's zero-copy costs a Frame, a registration with its garbage-collector thread and
# a wake-up of that thread when libzmq releases the buffer, so for a header or a 7-float action a copy
# is far cheaper. Copying images is not: each copy is a fresh malloc that glibc, once the copies are
# freed, trims back to the OS and faults in again (measured: 42-78 page faults per message and 2x the
# round trip for 2-3 frames of 147 KiB; 3.5x at 900 KiB), depending on the process's heap state.
ZERO_COPY_MIN_BYTES = 65536
_SNDMORE = int(zmq.SNDMORE)
_Frame = zmq.Frame
_Socket = zmq.Socket
# zmq.Socket.send is a Python wrapper (DRAFT routing_id/group arguments) around the compiled send;
# calling the compiled one directly saves a Python frame per message part
_socket_send = _BackendSocket.send


def _wire_arrays(arrays: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Header descriptors and C-contiguous little-endian buffers for `arrays` (copies only arrays that
    are not already laid out that way)."""
    descs = []
    bufs = []
    for name, arr in arrays.items():
        a = arr if type(arr) is np.ndarray else np.asarray(arr)
        key = _WIRE_NAMES.get(a.dtype)
        if key is None or not a.flags.c_contiguous:
            if a.dtype.name not in DTYPES:
                raise ValueError(f"array {name!r}: dtype {a.dtype} not in the protocol whitelist {sorted(DTYPES)}")
            key = a.dtype.name
            a = np.ascontiguousarray(a, dtype=DTYPES[key])
        descs.append({"name": name, "dtype": key, "shape": a.shape})
        bufs.append(a if a.ndim else a.reshape(1))  # 0-d arrays do not export a buffer
    return descs, bufs


class WireArrays:
    """Arrays laid out for the wire once, then sent any number of times (the bridge's current
    observation, answered to every request until the robot steps). Big arrays become zmq.Frames:
    a zero-copy send of a plain buffer registers it with pyzmq's garbage-collector thread, which
    libzmq wakes when the send completes, on *every* send; a Frame is registered once and libzmq
    shares its content between sends by reference count. Small arrays become bytes (the cheapest
    copied send). The arrays must not be mutated while this object or a send of it lives."""

    __slots__ = ("descs", "bufs")

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        descs, bufs = _wire_arrays(arrays)
        self.descs = descs
        self.bufs: list[Any] = [_Frame(b, copy=False) if b.nbytes >= ZERO_COPY_MIN_BYTES else b.tobytes()
                                for b in bufs]


def encode(msg: Message) -> list[Any]:
    """Message -> [header bytes, *array buffers] for `send_frames` (or `send_multipart`).

    Non-contiguous or big-endian arrays are converted (copied) once; contiguous little-endian
    ones are sent from their own memory, so the caller must not mutate them until sent.
    """
    if msg.type not in MESSAGE_TYPES:
        raise ValueError(f"message type {msg.type!r} not in {sorted(MESSAGE_TYPES)}")
    arrays = msg.arrays
    if type(arrays) is WireArrays:
        descs, bufs = arrays.descs, arrays.bufs
    else:
        descs, bufs = _wire_arrays(arrays)
    msg.t = t = time.monotonic_ns()
    header = {
        "v": PROTOCOL_VERSION,
        "type": msg.type,
        "seq": msg.seq,
        "t": t,
        "reply_to": msg.reply_to,
        "arrays": descs,
        "meta": msg.meta,
    }
    return [_packer().pack(header), *bufs]


def send_frames(sock: Any, frames: list[Any], flags: int = 0) -> None:
    """send_multipart that copies small frames and hands big ones (images) to zmq zero-copy.

    One copy flag for all frames cannot get both right (see ZERO_COPY_MIN_BYTES). zmq.Frames (from
    `WireArrays`) are sent by reference. The caller must not mutate a zero-copy array until zmq has
    sent it."""
    flags = int(flags)  # zmq flag enums: `|` on them goes through enum.__or__ (slow)
    more = flags | _SNDMORE
    send = _socket_send if type(sock) is _Socket else type(sock).send
    last = len(frames) - 1
    for i, f in enumerate(frames):
        tf = type(f)
        if tf is bytes or tf is _Frame:  # copied / shared by reference: no size check needed
            send(sock, f, flags if i == last else more)
        else:
            n = f.nbytes if tf is np.ndarray else memoryview(f).nbytes
            send(sock, f, flags if i == last else more, n < ZERO_COPY_MIN_BYTES)


def recv_frames(sock: Any, flags: int = 0) -> list[Any]:
    """recv_multipart(copy=False) without its per-frame getsockopt(RCVMORE) (a Python-level enum
    conversion each): a received zmq.Frame says itself whether more parts follow. Raises zmq.Again
    like recv when nothing arrives within the socket's RCVTIMEO (or at once with NOBLOCK); the
    parts of one message arrive together, so only the first recv can wait."""
    recv = type(sock).recv  # from the type: zmq.Socket's instance attribute lookup goes through a __getattr__ hook
    f = recv(sock, flags, False)
    frames = [f]
    while f.more:
        f = recv(sock, flags, False)
        frames.append(f)
    return frames


def _frame_bytes(frame: Any) -> memoryview:
    """zmq.Frame (copy=False), bytes-like or ndarray -> a read-only byte memoryview, never a copy."""
    if type(frame) is zmq.Frame:
        v = memoryview(frame)  # 1-D bytes; half the cost of the Frame.buffer property
    elif type(frame) is bytes:
        return memoryview(frame)
    else:
        v = getattr(frame, "buffer", frame)
        v = v if type(v) is memoryview else memoryview(v)
        if v.format != "B" or v.ndim != 1:
            v = v.cast("B")
    return v if v.readonly else v.toreadonly()  # arrays onto frames are read-only by contract


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("bad_header", f"msgpack extension type {code} is not allowed")


def decode(frames: list[Any], limits: ProtocolLimits = DEFAULT_LIMITS) -> Message:
    """Validate and decode [header, *array frames]; raises ProtocolError (never anything else).

    Type checks use `type(x) is T`: msgpack yields exact types, and this also refuses bool for int."""
    if not frames:
        raise ProtocolError("bad_header", "empty message")
    f = frames[0]
    head = memoryview(f) if type(f) is _Frame else _frame_bytes(f)
    if head.nbytes > limits.max_header_bytes:
        raise ProtocolError("too_large", f"header is {head.nbytes} bytes > {limits.max_header_bytes}")
    try:
        h = msgpack.unpackb(head, raw=False, use_list=True, strict_map_key=True, ext_hook=_no_ext)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ProtocolError("bad_header", f"header is not valid msgpack ({type(e).__name__}: {e})") from None
    if type(h) is not dict:
        raise ProtocolError("bad_header", f"header must be a map, got {type(h).__name__}")
    get = h.get
    seq = get("seq")
    if type(seq) is not int:
        seq = None
    if get("v") != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {get('v')!r}, this side speaks {PROTOCOL_VERSION}", seq)
    typ, t, descs, meta, reply_to = get("type"), get("t"), get("arrays"), get("meta"), get("reply_to")
    if not (type(typ) is str and seq is not None and type(t) is int and type(descs) is list and type(meta) is dict):
        for key, want in (("type", str), ("seq", int), ("t", int), ("arrays", list), ("meta", dict)):
            if type(get(key)) is not want:
                raise ProtocolError("bad_header", f"field {key!r} must be {want.__name__}, got {get(key)!r:.80}", seq)
    if typ not in MESSAGE_TYPES:
        raise ProtocolError("bad_type", f"unknown message type {typ!r:.40}", seq)
    if reply_to is not None and type(reply_to) is not int:
        raise ProtocolError("bad_header", f"reply_to must be int or nil, got {reply_to!r:.40}", seq)
    n_arrays = len(descs)
    if n_arrays > limits.max_arrays:
        raise ProtocolError("too_large", f"{n_arrays} arrays > max {limits.max_arrays}", seq)
    if n_arrays != len(frames) - 1:
        raise ProtocolError("bad_array", f"header declares {n_arrays} arrays but {len(frames) - 1} frames follow", seq)
    arrays: dict[str, np.ndarray] = {}
    if n_arrays:
        views = [memoryview(f).toreadonly() if type(f) is _Frame else _frame_bytes(f) for f in frames[1:]]
        total = head.nbytes
        for v in views:
            total += v.nbytes
        if total > limits.max_message_bytes:
            raise ProtocolError("too_large", f"message is {total} bytes > {limits.max_message_bytes}", seq)
        max_ndim, max_name_len = limits.max_ndim, limits.max_name_len
        for d, view in zip(descs, views, strict=True):
            # inlined per-array checks (a function call per array costs as much as the checks)
            if type(d) is not dict:
                raise ProtocolError("bad_array", f"array descriptor must be a map, got {type(d).__name__}", seq)
            name, dtype, shape = d.get("name"), d.get("dtype"), d.get("shape")
            if type(name) is not str or not 0 < len(name) <= max_name_len:
                raise ProtocolError("bad_array", f"array name must be a str of 1..{max_name_len} chars", seq)
            dt = DTYPES.get(dtype) if type(dtype) is str else None
            if dt is None:
                raise ProtocolError("bad_array", f"array {name!r}: dtype {dtype!r:.40} not in {sorted(DTYPES)}", seq)
            n = dt.itemsize  # python ints: no overflow on hostile shapes
            if type(shape) is list and len(shape) <= max_ndim:
                for s in shape:
                    if type(s) is not int or s < 0:
                        n = -1
                        break
                    n *= s
            else:
                n = -1
            if n < 0:
                raise ProtocolError("bad_array", f"array {name!r}: shape {shape!r:.80} must be <= {max_ndim} "
                                    "non-negative ints", seq)
            if n != view.nbytes:
                raise ProtocolError("bad_array", f"array {name!r}: shape {shape} x {dt.itemsize} B = {n} B but the "
                                    f"frame holds {view.nbytes} B", seq)
            if name in arrays:
                raise ProtocolError("bad_array", f"duplicate array name {name!r}", seq)
            # `view` is read-only, so the array is too: frames are shared with zmq. One call instead
            # of frombuffer + reshape.
            arrays[name] = np.ndarray(shape, dt, view)
    return Message(typ, seq, arrays, meta, reply_to, t)


def error_message(code: str, text: str, reply_to: int | None, seq: int = 0, **meta: Any) -> Message:
    if code not in ERROR_CODES:
        raise ValueError(f"error code {code!r} not in {ERROR_CODES}")
    return Message("error", seq=seq, reply_to=reply_to, meta={"code": code, "message": text, **meta})
