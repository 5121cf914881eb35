"""MP4 video for LeRobot datasets through PyAV: encode an episode, append it to a file, decode a span.

LeRobot v3.0 stores many episodes in one mp4 per camera; an episode is the span
[from_timestamp, to_timestamp) of that file. Appending remuxes the existing packets and the new
episode's packets (time-shifted) into a fresh file: no re-encoding of earlier episodes, and the
result replaces the old file atomically, so saved episodes stay decodable after a crash.

Usage:
    encode_frames(frames, "ep.mp4", fps=10)                 # frames [T, H, W, 3] uint8
    append_video("file-000.mp4", "ep.mp4", offset_s=12.3)    # -> file-000.mp4 holds both
    decode_span("file-000.mp4", 12.3, 15.0)                 # -> (times [T], frames [T, H, W, 3])
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from vla.data.format import atomic_move, tmp_sibling


def _av():
    try:
        import av
    except ImportError as e:  # explicit: video is optional, images in parquet need no PyAV
        raise ImportError("video datasets need PyAV: pip install av") from e
    return av


def encode_frames(
    frames: np.ndarray, path: str | Path, fps: int, codec: str = "libx264", crf: int = 18, gop: int = 2
) -> dict[str, object]:
    """Encode frames [T, H, W, 3] uint8 to an mp4 with time base 1/fps; returns LeRobot video info."""
    av = _av()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p video needs even height and width, got {h}x{w}")
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        # gop 2 like LeRobot: cheap seeks; no B-frames so pts == dts and shifting packets is trivial.
        stream.options = {"crf": str(crf), "g": str(gop), "bf": "0", "preset": "veryfast"}
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return {
        "video.height": h,
        "video.width": w,
        "video.codec": "h264" if codec == "libx264" else codec,
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": False,
    }


def append_video(dst: str | Path, episode: str | Path, offset_s: float, fresh: bool = False) -> None:
    """Make `dst` = its current content followed by `episode` shifted to start at `offset_s`.

    fresh=True starts a new file (whatever `dst` holds, e.g. the tail of a crashed session, is
    dropped). The new file replaces `dst` atomically.
    """
    av = _av()
    dst, episode = Path(dst), Path(episode)
    if not fresh and not dst.exists():
        raise FileNotFoundError(f"cannot append to {dst}: it does not exist (pass fresh=True to start it)")
    sources = ([] if fresh else [(dst, 0.0)]) + [(episode, offset_s)]
    tmp = tmp_sibling(dst)
    with av.open(str(tmp), mode="w") as out:
        out_stream = None
        for src, shift_s in sources:
            with av.open(str(src)) as inp:
                in_stream = inp.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(in_stream)
                tb = in_stream.time_base
                shift = int(round(shift_s / tb))
                for packet in inp.demux(in_stream):
                    if packet.dts is None:  # demuxer flush packet
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = out_stream
                    out.mux(packet)
    atomic_move(tmp, dst)


def decode_span(path: str | Path, from_s: float, to_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Decode frames with presentation time in [from_s, to_s): (times [T] s, frames [T, H, W, 3] uint8)."""
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file {path} does not exist")
    eps = 1e-4
    times, frames = [], []
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        if from_s > 0:
            inp.seek(int(from_s / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in inp.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t < from_s - eps:
                continue
            if t >= to_s - eps:
                break
            times.append(t)
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise ValueError(f"{path} has no frames in [{from_s}, {to_s}) s")
    return np.asarray(times), np.stack(frames)


class VideoDecoder:
    """Random access to the frames of one mp4: keeps the container open between calls.

    `frame_at(t)` decodes forward from the last position when `t` is a little ahead (sequential
    reads cost one frame each) and seeks to the preceding keyframe otherwise (random reads cost
    at most one GOP). Not shared across processes: the reader makes one per process.
    """

    FORWARD_WINDOW_S = 2.0  # decoding ahead beats seeking for short jumps even with long GOPs

    def __init__(self, path: str | Path) -> None:
        av = _av()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file {self.path} does not exist")
        self._container = av.open(str(self.path))
        self._stream = self._container.streams.video[0]
        self._tb = self._stream.time_base
        self._iter = None
        self._prev: tuple[float, np.ndarray] | None = None  # last decoded (time s, frame)

    def close(self) -> None:
        self._container.close()

    def frame_at(self, t: float) -> tuple[float, np.ndarray]:
        """The decoded frame whose time is nearest to `t` (s): (its time, uint8 [H, W, 3])."""
        eps = 1e-6
        last = self._prev  # the frame the decoder stopped at
        if last is not None and abs(last[0] - t) < eps:
            return last
        if self._iter is None or last is None or not (last[0] < t <= last[0] + self.FORWARD_WINDOW_S):
            self._container.seek(
                max(0, int(t / self._tb)), stream=self._stream, backward=True, any_frame=False
            )
            self._iter = self._container.decode(self._stream)
            last = None
        before = last  # nearest frame so far at or before t (ndarray or av frame)
        for frame in self._iter:
            ft = float(frame.pts * self._tb)
            if ft >= t - eps:
                self._prev = (ft, frame.to_ndarray(format="rgb24"))
                if before is not None and t - before[0] < ft - t:
                    return before[0], _rgb(before[1])
                return self._prev
            before = (ft, frame)
        self._iter = None  # end of stream: the last frame is the nearest
        if before is None:
            raise ValueError(f"{self.path} has no frame near t={t:.4f}s")
        self._prev = (before[0], _rgb(before[1]))
        return self._prev


def _rgb(frame) -> np.ndarray:
    return frame if isinstance(frame, np.ndarray) else frame.to_ndarray(format="rgb24")
