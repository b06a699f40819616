"""`vtx api` as users run it (host processes beside `vtx operator` and the real jobrunner image):
two replicas serving every client, a 1 GB streaming upload in bounded memory, and a schema-driven
fuzz of every endpoint that must never yield a 5xx."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import requests

from tests import media
from tests.services import Process, api_process, free_port, operator_process, started
from tests.stack import REPO, job_namespace, stack_env
from tests.uploads import announce_and_put, bearer, complete, upload, wait_finished
from tests.verify import assert_complete
from vtx.core import images as img
from vtx.core import tracks

pytestmark = pytest.mark.stack
GIB = 1024**3
RSS_LIMIT = 150 * 1024 * 1024


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    with job_namespace("vtx-test-api-e2e") as name:
        yield name


@pytest.fixture(scope="module")
def token() -> str:
    return stack_env()["VTX_API_TOKEN"]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, ns: str) -> Iterator[list[Process]]:
    logs = tmp_path_factory.mktemp("api")
    procs = [api_process(logs / f"api-{i}.log", ns) for i in range(2)]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory, ns: str) -> Iterator[Process]:
    process = operator_process(
        tmp_path_factory.mktemp("operator") / "operator.log", ns,
        health_port=free_port(), metrics_port=free_port(),
    )  # fmt: skip
    with started(process):
        yield process


async def follow(api: Process, token: str, video_id: str, within_s: float) -> list[dict[str, Any]]:
    """Status events of one video on a WebSocket of ``api`` until it is Ready or Failed."""
    got: list[dict[str, Any]] = []
    url = api.url.replace("http://", "ws://") + "/ws"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=("vtx.v1", f"bearer.{token}"), heartbeat=10) as ws,
    ):
        await ws.send_json({"type": "subscribe", "videos": [video_id]})
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(
                    f"{video_id} not Ready within {within_s:.0f}s; events: {got[-5:]}"
                )
            msg = await ws.receive_json(timeout=left)
            if msg["type"] == "status":
                got.append(msg)
                if msg["rendition"] is None and msg["phase"] in ("Ready", "Failed"):
                    return got


async def test_a_client_on_one_replica_sees_the_jobs_of_an_upload_through_the_other(
    replicas: list[Process], operator: Process, token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    a, b = replicas
    clip = media.make_clip(tmp_path_factory.mktemp("media") / "replicas.mp4", seconds=4,
                           width=854, height=480)  # fmt: skip
    video_id = await asyncio.to_thread(upload, b, token, clip)
    try:
        got = await follow(a, token, video_id, within_s=300)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\noperator log:\n{operator.tail()}") from None
    assert got[-1]["phase"] == "Ready"
    encoding = [e for e in got if e["rendition"] == "480p" and e["phase"] == "encoding"]
    assert encoding, "replica A relayed the jobrunner's progress events"
    assert any(e["rendition"] == "480p" and e["phase"] == "done" for e in got)
    view = (
        await asyncio.to_thread(requests.get, f"{a.url}/v1/videos/{video_id}", timeout=10)
    ).json()
    assert view["phase"] == "Ready"
    assert view["playback"]["hls"].startswith(a.url)
    # The playback links play: S3 through signed playlists, IPFS through the gateway.
    for url in (view["playback"]["hls"], view["playback"]["ipfs"]):
        report = media.probe(url)
        assert abs(float(report["format"]["duration"]) - 4) <= 0.2, url  # type: ignore[index]
    await asyncio.to_thread(check_images, a, view)
    await asyncio.to_thread(assert_complete, video_id)


def check_images(api: Process, view: dict[str, Any]) -> None:
    """The poster, thumbnail and sheet load without a token; the storyboard's cues, read
    through the API, cover the video and point at the sheet by a URL that loads."""
    images = view["images"]
    assert set(images) == {"poster", "thumbnail", "storyboard", "storyboard_vtt"}, images
    for fmt in img.JPEGS:
        got = requests.get(images[fmt], timeout=10)
        assert (got.status_code, got.headers["Content-Type"]) == (200, "image/jpeg"), fmt
        assert got.content[:3] == b"\xff\xd8\xff", f"{fmt} is a JPEG"
    assert (
        images["storyboard_vtt"] == f"{api.url}/v1/videos/{view['id']}/play/images/storyboard.vtt"
    )
    vtt = requests.get(images["storyboard_vtt"], timeout=10)
    assert (vtt.status_code, vtt.headers["Content-Type"].split(";")[0]) == (200, "text/vtt")
    cues = img.parse_storyboard_vtt(vtt.text)
    assert [(c.start, c.xywh) for c in cues] == [(0, (0, 0, 160, 90)), (2, (160, 0, 160, 90))]
    assert cues[-1].end == pytest.approx(4, abs=0.1)
    sheet = requests.get(cues[0].target, timeout=10)
    assert (sheet.status_code, sheet.content) == (
        200,
        requests.get(images["storyboard"], timeout=10).content,
    )
    poster = requests.get(
        f"{api.url}/v1/videos/{view['id']}/play/images/poster.jpg", timeout=10,
        allow_redirects=False,
    )  # fmt: skip
    assert poster.status_code == 302
    assert "/images/poster.jpg?" in poster.headers["Location"]


def test_uploads_as_real_clients_send_them(
    replicas: list[Process], operator: Process, token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """A Matroska file announced as application/octet-stream and a transport stream announced
    with the type many clients' tables give `.ts` (a Qt translation file) are taken and
    transcoded: the bytes decide. A text file announced as application/octet-stream is taken
    too, and fails with the probe's reason."""
    api = replicas[0]
    folder = tmp_path_factory.mktemp("clients")
    clip = media.make_clip(folder / "base.mp4", seconds=3, width=854, height=480, tone=1230)
    mkv, ts = folder / "holiday.mkv", folder / "broadcast.ts"
    for out in (mkv, ts):
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip), "-c", "copy",
             str(out)],
            check=True, timeout=60,
        )  # fmt: skip
    text = media.make_text_file(folder / "notes")
    sent = {
        announce_and_put(api, token, mkv, "application/octet-stream"): "Ready",
        announce_and_put(api, token, ts, "text/vnd.trolltech.linguist"): "Ready",
        announce_and_put(api, token, text, "application/octet-stream"): "Failed",
    }
    for vid in sent:
        complete(api, token, vid, expect=202)
    got = wait_finished(api, list(sent), timeout=400, operator=operator)
    assert {vid: v["phase"] for vid, v in got.items()} == sent, got
    failed = next(v for vid, v in got.items() if sent[vid] == "Failed")
    # In words for whoever uploaded it, with what ffprobe said beside it.
    assert failed["failure_reason"] == "This file is a text file, not a video.", failed
    assert "not a readable video or audio file" in (failed["failure_detail"] or ""), failed
    assert failed["images"] is None
    for vid, view in got.items():
        if sent[vid] == "Ready":
            assert set(view["renditions"]) == {"480p"}, view["renditions"]
    assert_complete(*[vid for vid, phase in sent.items() if phase == "Ready"])


def test_every_audio_track_and_the_subtitles_are_renditions_of_the_master(
    replicas: list[Process], operator: Process, token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """A film with an English stereo track, a German 5.1 track and English SRT subtitles: the
    master offers both tracks as audio renditions (named and tagged as the source says,
    English the default), each a stereo AAC playlist of its own, and the subtitles as a WebVTT
    rendition with the source's cues; the picture's HLS carries no sound, its MP4 the first
    track; and the whole is in S3, SQL and the IPFS root alike."""
    api = replicas[0]
    film = media.make_two_languages(tmp_path_factory.mktemp("tracks") / "film.mkv")
    vid = announce_and_put(api, token, film, "application/octet-stream")
    complete(api, token, vid, expect=202)
    view = wait_finished(api, [vid], timeout=300, operator=operator)[vid]
    assert view["phase"] == "Ready", view
    renditions = view["renditions"]
    assert set(renditions) == {"480p", "audio-1", "audio-2", "text-1"}, renditions
    assert [(renditions[n]["kind"], renditions[n]["language"], renditions[n]["title"])
            for n in ("audio-1", "audio-2", "text-1")] == [
        ("audio", "eng", "English"), ("audio", "deu", "Deutsch 5.1"),
        ("subtitles", "eng", "English subtitles"),
    ]  # fmt: skip
    master = requests.get(view["playback"]["hls"], headers=bearer(token), timeout=10)
    assert master.status_code == 200, master.text
    media_lines = [line for line in master.text.splitlines() if line.startswith("#EXT-X-MEDIA")]
    assert media_lines == [
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="English",LANGUAGE="eng",DEFAULT=YES,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio-1/hls/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="Deutsch 5.1",LANGUAGE="deu",DEFAULT=NO,'
        'AUTOSELECT=YES,CHANNELS="2",URI="audio-2/hls/index.m3u8"',
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English subtitles",LANGUAGE="eng",'
        'DEFAULT=NO,AUTOSELECT=NO,URI="text-1/hls/index.m3u8"',
    ], master.text
    assert ',AUDIO="audio",SUBTITLES="subs"\n480p/hls/index.m3u8' in master.text
    play = f"{api.url}/v1/videos/{vid}/play"
    for name in ("audio-1", "audio-2"):
        report = media.probe(f"{play}/{name}/hls/index.m3u8", token)
        got = [(s["codec_name"], s["channels"]) for s in media.streams(report)]
        assert got == [("aac", 2)], (name, got)
        length = float(str(cast(dict[str, Any], report["format"])["duration"]))
        assert length == pytest.approx(3, abs=0.5), name
    picture = media.probe(f"{play}/480p/hls/index.m3u8", token)
    assert [s["codec_type"] for s in media.streams(picture)] == ["video"]
    mp4 = media.probe(renditions["480p"]["mp4"])
    assert [s["codec_type"] for s in media.streams(mp4)] == ["video", "audio"]
    one, two = (
        requests.get(renditions[n]["mp4"], timeout=10).content for n in ("audio-1", "audio-2")
    )
    assert one != two, "each track its own sound"
    # The subtitles: one WebVTT segment through the API's playlist, the source's cues in it.
    playlist = requests.get(f"{play}/text-1/hls/index.m3u8", headers=bearer(token), timeout=10)
    assert playlist.status_code == 200, playlist.text
    segments = [line for line in playlist.text.splitlines() if line and line[0] != "#"]
    assert len(segments) == 1, playlist.text
    assert "#EXT-X-ENDLIST" in playlist.text
    vtt = requests.get(segments[0], timeout=10)
    assert vtt.status_code == 200
    assert vtt.headers["Content-Type"].startswith("text/vtt"), vtt.headers
    assert vtt.text == requests.get(renditions["text-1"]["mp4"], timeout=10).text
    subtitles = media.probe(renditions["text-1"]["mp4"])
    assert [(s["codec_type"], s["codec_name"]) for s in media.streams(subtitles)] == [
        ("subtitle", "webvtt")
    ], subtitles
    cues = tracks.cue_times(vtt.text)
    assert len(cues) == len(media.SUBTITLE_CUES), vtt.text
    for (start, end), (want_start, want_end, words) in zip(cues, media.SUBTITLE_CUES, strict=True):
        assert start == pytest.approx(want_start, abs=0.05), vtt.text
        assert end == pytest.approx(want_end, abs=0.05), vtt.text
        assert words in vtt.text
    assert_complete(vid)


class RepeatingStream:
    """``size`` bytes made of one block repeated, read like a file (so the length is known and
    sent as Content-Length) without ever being in memory whole."""

    def __init__(self, block: bytes, size: int) -> None:
        self.block = block
        self.left = size

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        n = len(self.block) if n < 0 else min(n, len(self.block))
        chunk = self.block[: min(n, self.left)]
        self.left -= len(chunk)
        return chunk


def test_a_1_gb_streaming_upload_in_bounded_memory(tmp_path: Path, ns: str, token: str) -> None:
    api = api_process(tmp_path / "api.log", ns)
    api.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        created = requests.post(
            f"{api.url}/v1/videos",
            json={"file_name": "big.mp4", "size": GIB, "content_type": "video/mp4"},
            headers=headers,
            timeout=30,
        ).json()
        resp = requests.put(
            f"{api.url}/v1/videos/{created['id']}/source",
            data=RepeatingStream(os.urandom(1024 * 1024), GIB),
            headers=headers,
            timeout=900,
        )
        assert resp.status_code == 202, resp.text
        peak = api.peak_rss_bytes()
        print(f"peak RSS of vtx api during a 1 GiB streaming upload: {peak / 2**20:.0f} MiB")
        assert peak < RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
    finally:
        api.stop()


def test_schemathesis_finds_no_server_error(tmp_path: Path, ns: str, token: str) -> None:
    api = api_process(tmp_path / "api.log", ns)
    api.start()
    try:
        proc = subprocess.run(
            [str(REPO / ".venv/bin/schemathesis"), "run", f"{api.url}/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", "30",
             "--header", f"Authorization: Bearer {token}",
             "--seed", "1", "--exclude-path", "/ws", "--max-time", "90"],
            capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,
        )  # fmt: skip
        report = proc.stdout[-4000:] + proc.stderr[-2000:]
        assert proc.returncode == 0, f"{report}\napi log:\n{api.tail()}"
        counts = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
        assert counts is not None, report
        generated, passed = int(counts.group(1)), int(counts.group(2))
        assert generated > 500, f"schemathesis ran too few cases to mean much: {report}"
        assert passed == generated, report
        print(f"schemathesis: {generated} cases, none answered 5xx")
    finally:
        # The webhooks it registered (an address it made up may be public) go with it.
        auth = {"Authorization": f"Bearer {token}"}
        made = requests.get(f"{api.url}/v1/webhooks", headers=auth, timeout=10).json()
        for hook in made.get("webhooks", []):
            requests.delete(f"{api.url}/v1/webhooks/{hook['id']}", headers=auth, timeout=10)
        api.stop()
