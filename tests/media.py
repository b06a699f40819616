"""Test media made with FFmpeg: clips of given size and length, and hostile files."""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from vtx.core.hls import MediaPlaylist, parse_media_playlist
from vtx.core.ladder import Rendition

if TYPE_CHECKING:
    from vtx.core.objects import ObjectStore


def make_clip(
    path: Path,
    *,
    seconds: float = 10,
    width: int = 1920,
    height: int = 1080,
    fps: int = 30,
    audio: bool = True,
    rotate: int | None = None,
    tone: int = 440,
) -> Path:
    """An H.264/AAC MP4 test clip (moving test pattern, a tone of ``tone`` Hz), made once per
    path. A tone of its own gives a clip whose outputs no other clip shares."""
    if path.exists():
        return path
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "128k"]
    tmp = path.with_suffix(".part.mp4")
    subprocess.run([*cmd, str(tmp)], check=True, timeout=300)
    if rotate is not None:
        # FFmpeg 5.1 writes a display matrix from the rotate tag only when stream-copying.
        rotated = path.with_suffix(".rot.mp4")
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(tmp), "-c", "copy",
             "-metadata:s:v:0", f"rotate={rotate}", str(rotated)],
            check=True, timeout=300,
        )  # fmt: skip
        rotated.replace(tmp)
    tmp.rename(path)
    return path


def make_audio_only(path: Path, *, seconds: float = 8, tone: int = 330) -> Path:
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             f"sine=frequency={tone}:sample_rate=44100", "-t", str(seconds), "-c:a", "aac",
             str(path)],
            check=True, timeout=120,
        )  # fmt: skip
    return path


SUBTITLE_CUES = (
    (0.5, 1.5, "Hello from the first cue."),
    (2.0, 2.8, "A second line, <i>in italics</i>."),
)


def make_two_languages(path: Path, *, seconds: float = 3) -> Path:
    """A Matroska film with two audio tracks, English stereo AAC (a 1230 Hz tone) first and
    German 5.1 AC-3 (a 440 Hz tone) second, and English SRT subtitles (SUBTITLE_CUES), each
    tagged with its language and name."""
    if not path.exists():
        srt = path.with_suffix(".srt")
        srt.write_text(
            "\n".join(
                f"{n}\n{_srt_time(start)} --> {_srt_time(end)}\n{text}\n"
                for n, (start, end, text) in enumerate(SUBTITLE_CUES, start=1)
            )
        )
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size=854x480:rate=25:duration={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=1230:sample_rate=48000:duration={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
             "-i", str(srt),
             "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
             "-c:a:0", "aac", "-ac:a:0", "2", "-c:a:1", "ac3", "-ac:a:1", "6", "-c:s", "srt",
             "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=English",
             "-metadata:s:a:1", "language=deu", "-metadata:s:a:1", "title=Deutsch 5.1",
             "-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "title=English subtitles",
             str(path)],
            check=True, timeout=120,
        )  # fmt: skip
    return path


def _srt_time(seconds: float) -> str:
    whole = int(seconds)
    return f"00:00:{whole:02d},{round((seconds - whole) * 1000):03d}"


def make_interlaced(path: Path, *, seconds: float = 4) -> Path:
    """A broadcast recording: 1080i25 MPEG-2 (top field first) and MP2 audio in MPEG-TS, its
    two fields of each frame taken 1/50 s apart from a moving pattern (so it combs)."""
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=50",
             "-f", "lavfi", "-i", "sine=frequency=550:sample_rate=48000", "-t", str(seconds),
             "-vf", "tinterlace=mode=interleave_top,setfield=tff", "-flags", "+ilme+ildct",
             "-top", "1", "-c:v", "mpeg2video", "-b:v", "12M", "-c:a", "mp2", "-f", "mpegts",
             str(path)],
            check=True, timeout=300,
        )  # fmt: skip
    return path


def field_detection(path_or_url: str) -> dict[str, int]:
    """Frames FFmpeg's ``idet`` filter finds interlaced (top or bottom field first) and
    progressive, by its multi-frame detection over the whole video."""
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", path_or_url, "-map", "0:v:0", "-vf", "idet",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stderr  # fmt: skip
    found = re.search(
        r"Multi frame detection: TFF:\s*(\d+)\s+BFF:\s*(\d+)\s+Progressive:\s*(\d+)", out
    )
    assert found, f"idet printed no summary: {out[-500:]}"
    tff, bff, progressive = (int(n) for n in found.groups())
    return {"interlaced": tff + bff, "progressive": progressive}


def make_text_file(path: Path) -> Path:
    path.write_text("This is not a video, whatever its name says.\n" * 50)
    return path


def make_disguised_playlist(path: Path) -> Path:
    """An HLS playlist named .mp4 whose segment is a local file: it must never be read."""
    path.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    )
    return path


def make_truncated_mp4(path: Path, source: Path) -> Path:
    """An upload cut short: an MP4 whose index (at its end) never arrived."""
    full = path.with_suffix(".full.mp4")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy",
         "-movflags", "-faststart", str(full)],
        check=True, timeout=120,
    )  # fmt: skip
    data = full.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    full.unlink()
    return path


def probe(path_or_url: str, token: str | None = None) -> dict[str, object]:
    """ffprobe's JSON report of a file or URL (any protocol ffprobe may use in tests); with
    ``token``, every HTTP request of it carries the API token (playlists of closed reads)."""
    import json

    auth = ["-headers", f"Authorization: Bearer {token}\r\n"] if token else []
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
         "-protocol_whitelist", "file,http,https,tcp,tls,crypto", *auth, path_or_url],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    report: dict[str, object] = json.loads(out)
    return report


def keyframe_times(path: Path) -> list[float]:
    """When each keyframe of the first video stream of a local file or playlist is shown."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-skip_frame", "nokey",
         "-show_entries", "frame=pts_time", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return [float(t.strip(",")) for t in out.split() if t.strip(",")]


def streams(report: dict[str, object], kind: str | None = None) -> list[dict[str, Any]]:
    """The streams of an ffprobe report (of one ``codec_type`` when given)."""
    found = cast(list[dict[str, Any]], report.get("streams") or [])
    return [s for s in found if kind is None or s.get("codec_type") == kind]


def make_growing_ts(path: Path, *, big: int = 8192) -> Path:
    """An MPEG-TS (named as the caller likes) of 2 s at 320x240 that jumps to ``big`` x
    ``big`` frames: the probe sees the start, the decoder would meet the rest."""
    parts = []
    for i, (size, seconds) in enumerate((("320x240", 2), (f"{big}x{big}", 0.2))):
        part = path.with_suffix(f".{i}.ts")
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc2=size={size}:rate=25", "-t", str(seconds), "-c:v", "libx264",
             "-preset", "ultrafast", "-f", "mpegts", str(part)],
            check=True, timeout=300,
        )  # fmt: skip
        parts.append(part)
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    for p in parts:
        p.unlink()
    return path


def make_cover_first(path: Path, *, flagged: bool) -> Path:
    """An MP4 whose first video track is a 7680x7680 picture (flagged as an attached picture,
    or not) beside a 640x360 clip."""
    picture = path.with_suffix(".png")
    clip = path.with_suffix(".clip.mp4")
    run = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run([*run, "-f", "lavfi", "-i", "color=c=red:s=7680x7680", "-frames:v", "1",
                    str(picture)], check=True, timeout=300)  # fmt: skip
    make_clip(clip, seconds=3, width=640, height=360)
    disposition = "attached_pic" if flagged else "0"
    subprocess.run(
        [*run, "-i", str(picture), "-i", str(clip), "-map", "0", "-map", "1", "-c:v:0", "mjpeg",
         "-c:v:1", "copy", "-c:a", "copy", "-disposition:v:0", disposition, str(path)],
        check=True, timeout=300,
    )  # fmt: skip
    picture.unlink()
    clip.unlink()
    return path


def make_stretched(path: Path, sar: str) -> Path:
    """A 1920x1080 clip whose pixels are ``sar`` (e.g. 40:1) wide as displayed."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=1920x1080:rate=25", "-t", "2", "-vf", f"setsar={sar.replace(':', '/')}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def make_pointing_playlist(path: Path, kind: str, target: str) -> Path:
    """An HLS playlist or a concat list (named .mp4) whose media is at ``target``."""
    if kind == "hls":
        path.write_text(
            f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{target}\n#EXT-X-ENDLIST\n"
        )
    else:
        path.write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    return path


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """``folder`` served over loopback HTTP, byte ranges too (FFmpeg's input seek reads an
    MP4's index, then jumps); yields the base URL."""

    class Ranged(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = Path(self.translate_path(self.path))
            wanted = self.headers.get("Range", "")
            if not wanted.startswith("bytes=") or not path.is_file():
                super().do_GET()
                return
            size = path.stat().st_size
            first_s, _, last_s = wanted[len("bytes=") :].partition("-")
            first = int(first_s or 0)
            last = min(int(last_s) if last_s else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with path.open("rb") as f:
                f.seek(first)
                self.wfile.write(f.read(last - first + 1))

    class Quiet(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # FFmpeg drops connections it has read enough of

    server = Quiet(("127.0.0.1", 0), functools.partial(Ranged, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def joined(out: Path, init: Path, segments: list[Path]) -> Path:
    """An fMP4 init segment and media segments, one after the other, in one file."""
    with out.open("wb") as f:
        for part in (init, *segments):
            f.write(part.read_bytes())
    return out


def packets(path: Path, stream: str) -> list[tuple[float, ...]]:
    """(pts, dts, duration) of each packet of the first ``stream`` ("v" or "a") of a local
    file; NaN where ffprobe gives none."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", f"{stream}:0", "-show_entries",
         "packet=pts_time,dts_time,duration_time", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return [
        tuple(float("nan") if x == "N/A" else float(x) for x in line.split(",")[:3])
        for line in out.split()
    ]


def steps(times: Iterable[float], digits: int) -> set[float]:
    """The distinct steps from one time to the next, rounded to ``digits`` (the times sorted
    first: packets come in decoding order)."""
    return {round(b - a, digits) for a, b in itertools.pairwise(sorted(times))}


def local_hls(store: ObjectStore, prefix: str, folder: Path) -> tuple[MediaPlaylist, Path]:
    """A copy in ``folder`` (made here) of the HLS that S3 holds under ``prefix`` (the
    rendition's ``hls`` folder): its playlist, init segment and segments, to be read as a
    player reads them. Returns the playlist and the copy's playlist file."""
    folder.mkdir(parents=True)
    text = store.get_bytes(f"{prefix}/index.m3u8").decode()
    playlist = parse_media_playlist(text)
    names = [s.uri for s in playlist.segments]
    if playlist.init_uri:
        names.append(playlist.init_uri)
    for name in names:
        (folder / name).write_bytes(store.get_bytes(f"{prefix}/{name}"))
    (folder / "index.m3u8").write_text(text)
    return playlist, folder / "index.m3u8"


def ssim(encoded: Path, source: Path, r: Rendition) -> float:
    """SSIM of a rendition against the source scaled to the rendition's size."""
    graph = f"[1:v]scale={r.width}:{r.height}:flags=lanczos,setsar=1[ref];[0:v][ref]ssim"
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-i", str(encoded), "-i", str(source), "-lavfi", graph,
         "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    match = re.search(r"All:([0-9.]+)", proc.stderr)
    assert match, proc.stderr[-500:]
    return float(match.group(1))
