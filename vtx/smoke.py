"""``vtx smoke --api URL``: an installation proven from a client's side. A tiny clip made with
FFmpeg is uploaded through the API (announce, then the bytes streamed through the API), followed
until ``Ready`` within a deadline, its master and media playlists read back through the API, and
the video deleted again (``--keep`` leaves it). The chart's ``helm test`` runs it.

The token comes from ``VTX_SMOKE_TOKEN`` (never from the command line, which process lists show).
Each step prints one line; a failure names the step and what the API answered, and exits 1."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where it is used: `vtx`'s other commands start without it
    import requests

TOKEN_ENV = "VTX_SMOKE_TOKEN"  # noqa: S105 - the variable's name, not a token
# Two seconds at 320x180 with a tone: one small rendition, encoded in about a second.
CLIP_SECONDS = 2


class SmokeFailed(Exception):
    """A step of the smoke test did not give what a client expects."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", required=True, help="base URL of the API, e.g. http://vtx-api:80")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for Ready (default 600)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the video in place")


def make_clip(directory: Path) -> Path:
    clip = directory / "vtx-smoke.mp4"
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=25:duration={CLIP_SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={CLIP_SECONDS}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-shortest", str(clip),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise SmokeFailed(f"FFmpeg could not make the clip: {proc.stderr.strip()[-500:]}")
    return clip


def _answer(resp: requests.Response, expect: int, what: str) -> Any:
    if resp.status_code != expect:
        raise SmokeFailed(f"{what}: HTTP {resp.status_code}, expected {expect}: {resp.text[:500]}")
    return resp.json() if "json" in resp.headers.get("Content-Type", "") else resp.text


def run(api: str, token: str, timeout: float, keep: bool, out: Any = sys.stdout) -> str:
    """Upload, wait for Ready, read the playlists, delete: the video's id."""
    import requests

    api = api.rstrip("/")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    _answer(http.get(f"{api}/readyz", timeout=30), 200, f"GET {api}/readyz")
    say(f"the API at {api} is ready")
    with tempfile.TemporaryDirectory(prefix="vtx-smoke-") as tmp:
        clip = make_clip(Path(tmp))
        size = clip.stat().st_size
        body = {"file_name": clip.name, "size": size, "content_type": "video/mp4",
                "title": "vtx smoke test"}  # fmt: skip
        created = _answer(
            http.post(f"{api}/v1/videos", json=body, timeout=30), 201, "POST /v1/videos"
        )
        vid = str(created["id"])
        say(f"video {vid} announced ({size} bytes)")
        with clip.open("rb") as f:
            _answer(
                http.put(f"{api}/v1/videos/{vid}/source", data=f, timeout=120),
                202,
                f"PUT /v1/videos/{vid}/source",
            )
    say(f"video {vid} uploaded through the API")
    started = time.monotonic()
    deadline = started + timeout
    last = ""
    while True:
        video = _answer(http.get(f"{api}/v1/videos/{vid}", timeout=30), 200, f"GET video {vid}")
        phase = str(video.get("phase") or "Pending")
        line = f"{phase} {video.get('progress', 0)}%"
        if line != last:
            say(f"  {line}")
            last = line
        if phase == "Ready":
            break
        if phase == "Failed":
            raise SmokeFailed(f"video {vid} failed: {video.get('failure_reason')}")
        if time.monotonic() > deadline:
            raise SmokeFailed(f"video {vid} was not Ready within {timeout:.0f}s (last: {line})")
        time.sleep(1)
    say(f"video {vid} is Ready after {time.monotonic() - started:.1f}s")
    master = _answer(
        http.get(f"{api}/v1/videos/{vid}/play/master.m3u8", timeout=30), 200, "the master playlist"
    )
    if "#EXT-X-STREAM-INF" not in master:
        raise SmokeFailed(f"the master playlist names no rendition: {master[:300]}")
    for rendition in video.get("renditions", {}):
        media = _answer(
            http.get(f"{api}/v1/videos/{vid}/play/{rendition}/hls/index.m3u8", timeout=30),
            200,
            f"the {rendition} playlist",
        )
        if "#EXT-X-ENDLIST" not in media:
            raise SmokeFailed(f"the {rendition} playlist is not finished: {media[:300]}")
    say(f"the master playlist and {len(video.get('renditions', {}))} media playlist(s) read back")
    if not keep:
        resp = http.delete(f"{api}/v1/videos/{vid}", timeout=60)
        if resp.status_code not in (200, 202, 204):
            raise SmokeFailed(f"DELETE video {vid}: HTTP {resp.status_code}: {resp.text[:300]}")
        say(f"video {vid} deleted")
    return vid


def main(args: argparse.Namespace) -> int:
    import requests

    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"vtx smoke: set {TOKEN_ENV} to a token the API accepts", file=sys.stderr)
        return 2
    try:
        vid = run(args.api, token, args.timeout, args.keep)
    except (SmokeFailed, requests.RequestException) as exc:
        print(f"vtx smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"vtx smoke: passed (video {vid})")
    return 0
