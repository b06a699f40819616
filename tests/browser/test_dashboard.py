"""The dashboard as people use it, in Chromium against the running API, operator and jobrunner:
an upload watched to Ready and played from storage and from IPFS, a bad file's failure shown in
words, playback of a transcode still running, a multipart upload resumed after a dropped
connection and a reload, the images (thumbnails in the list, the poster and the storyboard's
scrub preview in the player), and the audio and subtitle menus of a video with several audio
tracks and subtitles."""

from __future__ import annotations

import os
import re
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from playwright.sync_api import Locator, Page, Position, Request, Response, Route, expect

from tests import media
from tests.browser.conftest import DESKTOP, MIB, PART_SIZE, Servers
from tests.receiver import Receiver
from tests.services import free_port
from tests.stack import stack_env, wait_until
from tests.uploads import announce_and_put, bearer, complete
from tests.verify import assert_complete, assert_verified
from vtx.core.db import Database
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings

pytestmark = pytest.mark.stack
TRANSCODE_S = 300  # an 8 s 720p clip takes 30-60 s to Ready on 2 cores
LONG_TRANSCODE_S = 600
S3 = "http://127.0.0.1:7070/"

# Resolves with the playback position once it passes `at` seconds, or with what went wrong as
# soon as the media element or hls.js reports an error (so a failure does not wait out the
# deadline and says what it was).
PLAYED_PAST = """(at) => {
  const video = document.getElementById("video");
  const player = document.getElementById("player");
  if (video.error || player.dataset.fatalError) {
    return {error: player.dataset.fatalError || `media error ${video.error.code}`,
            words: document.getElementById("player-error").textContent};
  }
  return video.currentTime > at ? {time: video.currentTime, source: player.dataset.source} : false;
}"""

UPLOAD_ENDED = """() => {
  const error = document.getElementById("upload-error");
  if (!error.hidden) return {error: error.textContent};
  const status = document.getElementById("upload-status").textContent;
  const bar = Number(document.getElementById("upload-bar").value);
  return status.startsWith("Uploaded") ? {bar, status} : false;
}"""

# Every value each rendition bar takes, recorded by the page's own DOM changes.
RECORD_BARS = """() => {
  window.barValues = {};
  const list = document.getElementById("video-list");
  const record = () => {
    for (const row of list.querySelectorAll("li.video .rendition")) {
      const key = `${row.closest("li.video").dataset.id}/${row.dataset.rendition}`;
      const value = Number(row.querySelector("progress").value);
      const seen = (window.barValues[key] ||= []);
      if (seen[seen.length - 1] !== value) seen.push(value);
    }
  };
  new MutationObserver(record).observe(list, {subtree: true, childList: true, attributes: true});
}"""


# The list row's thumbnail once it has loaded, or what went wrong (a broken image) at once.
THUMBNAIL_LOADED = """(id) => {
  const img = document.querySelector(`#video-${id} .thumb img`);
  if (!img || !img.complete) return false;
  const box = img.parentElement.getBoundingClientRect();
  const seen = {width: img.naturalWidth, height: img.naturalHeight, src: img.getAttribute("src"),
                alt: img.alt, loading: img.loading, state: img.parentElement.dataset.state,
                box: [box.width, box.height]};
  if (img.naturalWidth === 0) return {error: "the thumbnail did not load", ...seen};
  return seen.state === "image" ? seen : false;
}"""

# What the scrub preview shows: its time, and the tile's image, position and size.
SCRUB_PREVIEW = """() => {
  const preview = document.getElementById("scrub-preview");
  const tile = document.getElementById("scrub-tile");
  const style = getComputedStyle(tile);
  const box = tile.getBoundingClientRect();
  return {visible: !preview.hidden, tile: !tile.hidden, time: Number(preview.dataset.time),
          text: document.getElementById("scrub-time").textContent,
          image: style.backgroundImage, position: style.backgroundPosition,
          width: box.width, height: box.height,
          duration: document.getElementById("video").duration};
}"""

STORYBOARD_CUE = re.compile(
    r"^(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3}) --> (?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})[^\n]*\n"
    r"(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)$",
    re.MULTILINE,
)


class Cue(NamedTuple):
    start: float
    end: float
    url: str
    x: int
    y: int
    w: int
    h: int


def storyboard_cues(text: str) -> list[Cue]:
    """The cues of a storyboard VTT, read independently of the page's parser."""
    assert text.startswith("WEBVTT"), text[:200]

    def seconds(h: str | None, m: str, s: str, ms: str) -> float:
        return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for g in STORYBOARD_CUE.findall(text):
        x, y, w, h = (int(n) for n in g[9:])
        cues.append(Cue(seconds(*g[0:4]), seconds(*g[4:8]), g[8], x, y, w, h))
    return cues


def clock(seconds: float) -> str:
    """A position as the page shows it (m:ss under an hour)."""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def image_size(url: str) -> tuple[int, int]:
    (stream,) = media.streams(media.probe(url), "video")
    return int(stream["width"]), int(stream["height"])


def open_dashboard(page: Page, token: str) -> None:
    page.goto("/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#connection"), "the status socket to connect").to_have_attribute(
        "data-state", "live", timeout=30_000
    )


def choose_and_upload(page: Page, path: Path, title: str) -> Locator:
    page.locator("#file").set_input_files(path)
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_role("button", name="Upload", exact=True).click()
    return video_item(page, title)


def video_item(page: Page, title: str) -> Locator:
    return page.locator("li.video").filter(has=page.get_by_role("heading", name=title, exact=True))


def wait_uploaded(page: Page, timeout_s: float = 120) -> None:
    """Until the page says the upload is complete, or shows why it is not."""
    outcome: dict[str, Any] = page.wait_for_function(
        UPLOAD_ENDED, timeout=timeout_s * 1000
    ).json_value()
    assert "error" not in outcome, f"the upload failed: {outcome}"
    assert outcome["bar"] == 100, outcome


def wait_finished(page: Page, video_id: str, timeout_s: float) -> str:
    """The video's phase on the page once it is Ready or Failed."""
    page.wait_for_function(
        "id => ['Ready', 'Failed'].includes(document.getElementById(`video-${id}`)?.dataset.phase)",
        arg=video_id,
        timeout=timeout_s * 1000,
    )
    phase = page.locator(f"#video-{video_id}").get_attribute("data-phase")
    assert phase is not None
    return phase


def play_past(page: Page, seconds: float, timeout_s: float) -> dict[str, Any]:
    result: dict[str, Any] = page.wait_for_function(
        PLAYED_PAST, arg=seconds, timeout=timeout_s * 1000
    ).json_value()
    assert "error" not in result, f"playback failed: {result}"
    assert page.evaluate("document.getElementById('video').error") is None
    return result


def api_video(servers: Servers, video_id: str) -> dict[str, Any]:
    resp = requests.get(f"{servers.api.url}/v1/videos/{video_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def unique(title: str) -> str:
    return f"{title} {uuid.uuid4().hex[:6]}"


def failed_video_with_an_unbroken_reason() -> str:
    """A video that failed with a technical detail no space breaks (the allow-list of formats,
    as ffprobe names it when it refuses a source): at phone width it has to wrap, not widen the
    page."""
    video_id = str(uuid.uuid4())
    formats = ",".join(["mov", "mp4", "m4a", "3gp", "matroska", "webm", "mpegts", "avi"] * 6)
    detail = f"InvalidSource: hls input is not allowed (Format not on whitelist '{formats}')"
    reason = "This file is an HLS playlist, not a video. Upload the video file itself."
    # The page's token's own: a token lists its own videos.
    owner = stack_env()["VTX_API_TOKENS"].split(":", 1)[0]
    db = Database(Settings.from_env(stack_env()).database_url, max_connections=1)
    try:
        db.transaction(
            lambda cur: cur.execute(
                "INSERT INTO videos (id, title, file_name, content_type, file_size, upload_status,"
                " phase, failure_reason, failure_detail, owner) VALUES (%s, %s, 'refused.mp4',"
                " 'video/mp4', 1, 'failed', 'Failed', %s, %s, %s)",
                (video_id, unique("Refused"), reason, detail, owner),
            )
        )
    finally:
        db.close()
    return video_id


def test_an_upload_is_watched_to_ready_and_plays_from_storage_and_ipfs(
    page: Page, servers: Servers, token: str, tmp_path: Path, artifacts: Path
) -> None:
    clip = media.make_clip(tmp_path / "pattern-720p.mp4", seconds=8, width=1280, height=720)
    refused = failed_video_with_an_unbroken_reason()
    open_dashboard(page, token)
    expect(page.locator("#video-list"), "the list to load").not_to_have_attribute(
        "aria-busy", "true"
    )
    list_reads: list[str] = []
    page.on("request", lambda r: list_reads.append(r.url) if "/v1/videos?" in r.url else None)
    page.evaluate(RECORD_BARS)
    page.evaluate("window.sameDocument = true")

    title = unique("Test pattern 720p")
    item = choose_and_upload(page, clip, title)
    wait_uploaded(page)
    video_id = item.get_attribute("data-id")
    assert video_id
    # The list while the renditions encode (or, on a fast day, once they are done).
    page.wait_for_function(
        "id => [...document.querySelectorAll(`#video-${id} .rendition progress`)]"
        ".some(bar => bar.value > 0)",
        arg=video_id,
        timeout=TRANSCODE_S * 1000,
    )
    item.screenshot(path=artifacts / "dashboard-list.png")

    phase = wait_finished(page, video_id, TRANSCODE_S)
    assert phase == "Ready", item.inner_text()
    assert page.evaluate("window.sameDocument"), "the page was reloaded"
    assert not list_reads, f"the list was read again (polling?): {list_reads}"
    bars: dict[str, list[int]] = page.evaluate(
        "id => Object.fromEntries(Object.entries(window.barValues)"
        ".filter(([k]) => k.startsWith(id + '/')))",
        video_id,
    )
    assert sorted(k.split("/")[1] for k in bars) == ["480p", "720p"], bars
    assert all(seen[-1] == 100 for seen in bars.values()), bars
    assert any(0 < v < 100 for seen in bars.values() for v in seen), f"no bar moved: {bars}"
    expect(item.locator(".badge")).to_have_text("Ready")

    item.get_by_role("button", name="Play").click()
    play_past(page, 2, timeout_s=60)
    expect(page.locator("#player")).to_have_attribute("data-engine", "hls.js")
    quality = page.get_by_label("Quality")
    labels = [o.split(" ·")[0] for o in quality.locator("option").all_inner_texts()]
    assert labels == ["Auto", "480p", "720p"], labels
    # From the start again, so that the 8 s clip does not end before the switch shows.
    page.evaluate("document.getElementById('video').currentTime = 0")
    quality.select_option(index=2)
    expect(page.locator("#player-status"), "a switch to 720p").to_have_text(
        re.compile(r"^Playing from storage · 720p · [0-9.]+ Mb/s$"), timeout=30_000
    )

    video = api_video(servers, video_id)
    expect(page.locator("#cid")).to_have_text(video["cid"])
    links = page.locator("#mp4-links a")
    expect(links).to_have_text(["480p MP4", "720p MP4"])
    mp4 = page.request.get(links.nth(1).get_attribute("href") or "")
    assert mp4.ok, mp4.status
    assert mp4.body()[4:8] == b"ftyp", "the 720p MP4 link does not give an MP4"

    page.screenshot(path=artifacts / "dashboard-player.png")

    # Back to the start, then the same video from the IPFS gateway.
    gateway_segments: list[tuple[str, int]] = []

    def from_gateway(response: Response) -> None:
        url = response.url
        if url.startswith(video["playback"]["ipfs"].split("/ipfs/")[0]) and "/hls/" in url:
            gateway_segments.append((url, response.status))

    page.on("response", from_gateway)
    page.evaluate("() => { const v = document.getElementById('video'); v.pause(); "
                  "v.currentTime = 0; }")  # fmt: skip
    page.get_by_label("IPFS gateway").check()
    expect(page.locator("#player")).to_have_attribute("data-source", "ipfs")
    played = play_past(page, 2, timeout_s=60)
    assert played["source"] == "ipfs"
    segments = [(u, s) for u, s in gateway_segments if not u.endswith(".m3u8")]
    assert segments, f"nothing was loaded from the gateway: {gateway_segments}"
    assert all(status == 200 for _, status in segments), segments

    # At phone width: one column, nothing wider than the screen, long failure reasons included.
    page.set_viewport_size({"width": 390, "height": 844})
    refusal = page.locator(f"#video-{refused} .failure")
    expect(refusal).to_contain_text("This file is an HLS playlist, not a video.")
    refusal.get_by_text("Technical detail").click()
    expect(refusal.locator(".failure-detail code")).to_contain_text("Format not on whitelist")
    layout = page.evaluate(
        """() => {
          const player = document.getElementById("player").getBoundingClientRect();
          const list = document.getElementById("video-list").getBoundingClientRect();
          // What reaches past the screen's right edge, to name it when the check fails.
          const wide = [...document.querySelectorAll("body *")]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(0, 8)
            .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className} `
                      + `${Math.round(e.getBoundingClientRect().width)}px`);
          return {overflow: document.documentElement.scrollWidth - window.innerWidth,
                  stacked: player.bottom <= list.top, width: list.width, wide};
        }"""
    )
    assert layout["overflow"] <= 0, layout
    assert layout["stacked"], layout
    page.screenshot(path=artifacts / "dashboard-phone.png")
    page.set_viewport_size(DESKTOP)
    assert_complete(video_id)


def test_a_bad_file_shows_its_failure_reason_in_words(
    page: Page, servers: Servers, token: str, tmp_path: Path
) -> None:
    bad = media.make_text_file(tmp_path / "notes.mp4")
    page.goto("/")
    # A wrong token: the socket says why it is not live, and an upload says what to do.
    page.get_by_label("API token").fill("vtx_not-a-token-this-server-knows")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "refused")
    expect(page.locator("#connection")).to_contain_text("does not accept this API token")
    page.locator("#file").set_input_files(bad)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#upload-error")).to_contain_text("does not accept this API token")
    expect(page.get_by_label("API token")).to_have_attribute("aria-invalid", "true")

    receiver = Receiver(free_port())
    receiver.start()
    auth = {"Authorization": f"Bearer {token}"}
    made = requests.post(
        f"{servers.api.url}/v1/webhooks", headers=auth, timeout=10,
        json={"url": receiver.url, "event_types": ["video.failed"]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    try:
        _upload_and_see_it_fail(page, servers, token, bad, receiver, made.json())
    finally:
        receiver.stop()
        requests.delete(f"{servers.api.url}/v1/webhooks/{made.json()['id']}", headers=auth,
                        timeout=10)  # fmt: skip


def _upload_and_see_it_fail(
    page: Page, servers: Servers, token: str, bad: Path, receiver: Receiver,
    hook: dict[str, Any],
) -> None:  # fmt: skip
    open_dashboard(page, token)
    # The drop zone by keyboard: visible focus, and Enter opens the file picker.
    page.get_by_label("Title", exact=True).click()
    page.keyboard.press("Shift+Tab")
    drop = page.locator("#drop")
    expect(drop).to_be_focused()
    assert drop.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(bad)
    expect(drop).to_contain_text("notes.mp4")
    title = unique("Not a video")
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_uploaded(page)
    item = video_item(page, title)
    video_id = item.get_attribute("data-id")
    assert video_id

    assert wait_finished(page, video_id, 120) == "Failed", item.inner_text()
    assert_verified(video_id)
    failure = item.locator(".failure")
    expect(failure).to_be_visible()
    # In words; what ffprobe said is one click away.
    expect(failure).to_contain_text("Failed: This file is a text file, not a video.")
    detail = failure.locator(".failure-detail code")
    expect(detail).to_be_hidden()
    failure.get_by_text("Technical detail").click()
    expect(detail).to_contain_text("InvalidSource: the source is not a readable video")
    view = api_video(servers, video_id)
    assert view["failure_reason"] in failure.inner_text()
    assert view["failure_detail"] in detail.inner_text()
    expect(item.get_by_role("button", name="Play")).to_be_hidden()
    # The owner's webhook was told, signed, and the dashboard shows the delivery.
    event = wait_until(
        "video.failed at the webhook receiver",
        lambda: receiver.of(hook["secret"], "video.failed", video_id), timeout=60, every=0.5,
    )  # fmt: skip
    assert event["data"]["reason"] == view["failure_reason"], event
    log = f"{servers.api.url}/v1/webhooks/{hook['id']}/deliveries"
    auth = {"Authorization": f"Bearer {token}"}
    wait_until(
        "the delivery recorded as delivered",
        lambda: requests.get(log, headers=auth, timeout=10).json()["deliveries"][0]["state"]
        == "delivered" or None, timeout=30,
    )  # fmt: skip
    page.get_by_role("button", name="Refresh").click()
    webhook = page.locator(f"li.webhook[data-id='{hook['id']}']")
    expect(webhook).to_contain_text(receiver.url)
    expect(webhook.locator("tbody tr").first).to_contain_text("video.failed")
    expect(webhook.locator("tbody tr[data-state='delivered']").first).to_be_visible()


def test_a_video_plays_while_it_is_still_transcoding(
    page: Page, servers: Servers, token: str, tmp_path: Path
) -> None:
    # Long enough that the transcode is still running when playback has started: 120 s of
    # 480p encodes in about 30 s on an idle 2-core machine, and the player needs about 3 s.
    clip = media.make_clip(tmp_path / "long-480p.mp4", seconds=120, width=854, height=480)
    assert clip.stat().st_size > 2 * PART_SIZE  # so it goes up as a multipart upload
    open_dashboard(page, token)
    title = unique("Long clip")
    item = choose_and_upload(page, clip, title)
    wait_uploaded(page)
    video_id = item.get_attribute("data-id")
    assert video_id

    play = item.get_by_role("button", name="Play")
    expect(play, "playback to be offered while transcoding").to_be_enabled(timeout=240_000)
    play.click()
    play_past(page, 2, timeout_s=180)
    assert api_video(servers, video_id)["phase"] != "Ready", "the transcode ended first"
    expect(item).not_to_have_attribute("data-phase", "Ready")

    # The growing playlist ends cleanly when the transcode does.
    assert wait_finished(page, video_id, LONG_TRANSCODE_S) == "Ready", item.inner_text()
    assert page.locator("#player").get_attribute("data-fatal-error") is None
    assert_complete(video_id)


def test_a_multipart_upload_resumes_after_a_drop_and_a_reload(
    page: Page, servers: Servers, token: str, tmp_path: Path
) -> None:
    data = os.urandom(5 * PART_SIZE + MIB)  # six parts; the last one short
    path = tmp_path / "camera-roll.mp4"
    path.write_bytes(data)
    other = tmp_path / "another.mp4"
    other.write_bytes(os.urandom(MIB))
    sent: list[tuple[int, int]] = []  # (part, status) of every part PUT that got an answer
    dropped: list[int] = []

    def part_of(url: str) -> int | None:
        numbers = parse_qs(urlparse(url).query).get("partNumber")
        return int(numbers[0]) if url.startswith(S3) and numbers else None

    def on_response(response: Response) -> None:
        number = part_of(response.url)
        if number is not None and response.request.method == "PUT":
            sent.append((number, response.status))

    def drop_connection(route: Route, request: Request) -> None:
        dropped.append(part_of(request.url) or 0)
        route.abort("connectionreset")

    page.on("response", on_response)
    open_dashboard(page, token)

    def second_part(url: str) -> bool:
        return part_of(url) == 2

    page.route(second_part, drop_connection)
    title = unique("Camera roll")
    item = choose_and_upload(page, path, title)
    error = page.locator("#upload-error")
    expect(error, "the upload to give up on part 2").to_contain_text(
        "connection to storage dropped", timeout=60_000
    )
    assert len(dropped) == 3, f"expected the first try and two automatic resumes: {dropped}"
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    video_id = item.get_attribute("data-id")
    assert video_id
    before = {n for n, status in sent if status == 200}
    assert before, sent
    assert 2 not in before, sent

    page.unroute(second_part)
    page.reload()
    entry = page.locator("#unfinished-list li").filter(has_text="camera-roll.mp4")
    expect(entry).to_contain_text(f"{len(before)} of 6 parts in storage")
    with page.expect_file_chooser() as chooser:
        entry.get_by_role("button", name="Resume").click()
    chooser.value.set_files(other)
    expect(error).to_contain_text("not the same file")

    sent.clear()
    with page.expect_file_chooser() as chooser:
        entry.get_by_role("button", name="Resume").click()
    chooser.value.set_files(path)
    wait_uploaded(page)
    after = {n for n, status in sent if status == 200}
    assert after == set(range(1, 7)) - before, (before, sent)
    expect(page.locator("#unfinished")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('vtx.unfinished-uploads')") == "[]"

    video = api_video(servers, video_id)
    assert video["status"] != "awaiting_upload", video
    store = ObjectStore(Settings.from_env(stack_env()))
    assert store.get_bytes(video["source"]["key"]) == data, "the parts were assembled wrongly"
    assert_verified(video_id)


def test_live_status_comes_back_after_the_api_restarts(
    page: Page, servers: Servers, token: str, tmp_path: Path
) -> None:
    open_dashboard(page, token)
    connection = page.locator("#connection")
    servers.api.stop()
    expect(connection, "the page to notice the API is gone").to_have_attribute(
        "data-state", "waiting", timeout=30_000
    )
    expect(connection).to_contain_text("reconnecting in")
    servers.api.start()
    expect(connection, "the page to reconnect by itself").to_have_attribute(
        "data-state", "live", timeout=60_000
    )
    # Subscribed again: a phase that only an event can bring still arrives.
    title = unique("After the restart")
    item = choose_and_upload(page, media.make_text_file(tmp_path / "restart.mp4"), title)
    wait_uploaded(page)
    video_id = item.get_attribute("data-id")
    assert video_id
    assert wait_finished(page, video_id, 120) == "Failed", item.inner_text()
    assert_verified(video_id)


def test_the_list_shows_thumbnails_and_the_player_a_storyboard_preview(
    page: Page, servers: Servers, token: str, tmp_path: Path
) -> None:
    tone = 300 + uuid.uuid4().int % 3000  # outputs no other test's clip shares
    clip = media.make_clip(
        tmp_path / "storyboard-720p.mp4", seconds=8, width=1280, height=720, tone=tone
    )
    sound = media.make_audio_only(tmp_path / "tone.m4a", seconds=4, tone=tone)
    open_dashboard(page, token)
    page.evaluate("window.sameDocument = true")
    title = unique("Storyboard 720p")
    item = choose_and_upload(page, clip, title)
    wait_uploaded(page)
    video_id = item.get_attribute("data-id")
    assert video_id
    # Not transcoded yet: a placeholder in the thumbnail's box.
    thumb = item.locator(".thumb")
    expect(thumb).to_have_attribute("data-state", "none")
    expect(thumb.locator("img")).to_have_count(0)
    before = thumb.bounding_box()
    assert before is not None
    # An audio-only source, uploaded by an app: the page hears of it from the events.
    audio_id = announce_and_put(servers.api, token, sound, content_type="audio/mp4")
    complete(servers.api, token, audio_id, expect=202)

    assert wait_finished(page, video_id, TRANSCODE_S) == "Ready", item.inner_text()
    audio = page.locator(f"#video-{audio_id}")
    assert wait_finished(page, audio_id, TRANSCODE_S) == "Ready", audio.inner_text()
    view = api_video(servers, video_id)
    images = view["images"]
    assert images is not None, f"a Ready 720p video has no images: {view}"
    assert set(images) == {"poster", "thumbnail", "storyboard", "storyboard_vtt"}, images
    assert api_video(servers, audio_id)["images"] is None, "an audio-only video has images"

    # The thumbnail arrived without a reload, in the same box, at its own size.
    shown: dict[str, Any] = page.wait_for_function(
        THUMBNAIL_LOADED, arg=video_id, timeout=60_000
    ).json_value()
    assert "error" not in shown, f"the thumbnail is a broken image: {shown}"
    assert page.evaluate("window.sameDocument"), "the page was reloaded"
    width, height = image_size(images["thumbnail"])
    assert min(width, height) == 180, f"the thumbnail is {width}x{height}"
    assert (shown["width"], shown["height"]) == (width, height), shown
    assert urlparse(shown["src"]).path == urlparse(images["thumbnail"]).path, shown
    assert shown["alt"] == f"Thumbnail of {title}", shown
    assert shown["loading"] == "lazy", shown
    after = thumb.bounding_box()
    assert after is not None
    assert (after["width"], after["height"]) == (before["width"], before["height"]), (
        before, after
    )  # fmt: skip
    # Audio has no images: the placeholder, never a broken image.
    expect(audio.locator(".thumb")).to_have_attribute("data-state", "audio")
    expect(audio.locator(".thumb")).to_contain_text("Audio")
    expect(audio.locator(".thumb img")).to_have_count(0)

    item.get_by_role("button", name="Play").click()
    player = page.locator("#player")
    expect(player, "the storyboard to load").to_have_attribute(
        "data-storyboard", "ready", timeout=30_000
    )
    play_past(page, 1, timeout_s=60)
    page.evaluate("document.getElementById('video').pause()")
    poster = page.locator("#video").get_attribute("poster")
    assert poster, "the video element has no poster"
    assert urlparse(poster).path == urlparse(images["poster"]).path, (poster, images)
    loaded = page.request.get(poster)
    assert loaded.ok, loaded.status
    assert loaded.body()[:3] == b"\xff\xd8\xff", "the poster is not a JPEG"

    answer = requests.get(images["storyboard_vtt"], headers=bearer(token), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/vtt"), answer.headers
    cues = storyboard_cues(answer.text)
    assert cues, answer.text
    assert cues[0].start == 0, cues[0]
    assert all(a.end == b.start for a, b in pairwise(cues)), cues
    sheet = image_size(images["storyboard"])

    # The pointer at the middle of the bar: the tile of the middle of the video, and its time.
    bar = page.get_by_label("Position")
    expect(bar).to_be_enabled()
    box = bar.bounding_box()
    assert box is not None
    middle: Position = {"x": box["width"] / 2, "y": box["height"] / 2}
    bar.hover(position=middle)
    preview = page.locator("#scrub-preview")
    expect(preview, "the preview on hovering the bar").to_be_visible()
    seen: dict[str, Any] = page.evaluate(SCRUB_PREVIEW)
    duration = seen["duration"]
    assert abs(duration - 8) < 0.5, seen
    assert abs(cues[-1].end - duration) < 1, (cues[-1], duration)
    at = seen["time"]
    assert abs(at - duration / 2) < 0.1, seen
    assert seen["text"] == clock(at), seen
    cue = next(c for c in cues if c.start <= at < c.end)
    assert seen["tile"], seen
    # The sheet the page shows is the storyboard's, signed (at its own read of the cues).
    sheet_url = re.fullmatch(r'url\("(.+)"\)', seen["image"])
    assert sheet_url, seen
    assert urlparse(sheet_url[1]).path == urlparse(cue.url).path, (seen, cue)
    assert urlparse(cue.url).path == urlparse(images["storyboard"]).path, (cue, images)
    assert "X-Amz-Signature" in parse_qs(urlparse(sheet_url[1]).query), seen
    sheet_jpeg = page.request.get(sheet_url[1])
    assert sheet_jpeg.ok, sheet_jpeg.status
    assert sheet_jpeg.body()[:3] == b"\xff\xd8\xff", "the sheet is not a JPEG"
    assert seen["position"] == f"{-cue.x}px {-cue.y}px", (seen, cue)
    assert (seen["width"], seen["height"]) == (cue.w, cue.h), (seen, cue)
    assert cue.x + cue.w <= sheet[0], (cue, sheet)
    assert cue.y + cue.h <= sheet[1], (cue, sheet)

    # A click seeks there; the arrow keys step 5 s; the preview goes with the pointer.
    bar.click(position=middle)
    page.wait_for_function(
        "at => Math.abs(document.getElementById('video').currentTime - at) < 0.25",
        arg=at, timeout=10_000,
    )  # fmt: skip
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(
        "at => Math.abs(document.getElementById('video').currentTime - at) < 0.25",
        arg=max(0.0, at - 5), timeout=10_000,
    )  # fmt: skip
    page.mouse.move(0, 0)
    bar.blur()
    expect(preview, "the preview gone with the pointer").to_be_hidden()
    assert player.get_attribute("data-fatal-error") is None
    assert_complete(video_id, audio_id)


# The cues of the text track being shown, once it has them, and which are active now.
SHOWN_CUES = """() => {
  const video = document.getElementById("video");
  const showing = [...video.textTracks].filter((t) => t.mode === "showing");
  if (showing.length !== 1 || !showing[0].cues || !showing[0].cues.length) return false;
  const track = showing[0];
  return {label: track.label, language: track.language, time: video.currentTime,
          cues: [...track.cues].map((c) => [c.startTime, c.endTime, c.text]),
          active: [...(track.activeCues || [])].map((c) => c.text)};
}"""


def test_the_player_offers_each_audio_track_and_the_subtitles(
    page: Page, servers: Servers, token: str, tmp_path: Path
) -> None:
    film = media.make_two_languages(tmp_path / "two-languages.mkv", seconds=8)
    open_dashboard(page, token)
    video_id = announce_and_put(servers.api, token, film, content_type="video/x-matroska")
    complete(servers.api, token, video_id, expect=202)
    item = page.locator(f"#video-{video_id}")
    assert wait_finished(page, video_id, TRANSCODE_S) == "Ready", item.inner_text()
    german: list[str] = []
    page.on("request", lambda r: german.append(r.url) if "/audio-2/" in r.url else None)

    item.get_by_role("button", name="Play").click()
    play_past(page, 1, timeout_s=60)
    menu = page.get_by_label("Audio", exact=True)
    expect(menu, "the audio menu of a video with two tracks").to_be_visible()
    expect(menu.locator("option")).to_have_text(["English (eng)", "Deutsch 5.1 (deu)"])
    expect(menu).to_have_value("0")
    assert not german, f"the second track was loaded before it was chosen: {german}"
    # From the start again, so that the 8 s film does not end before the switch shows.
    page.evaluate("document.getElementById('video').currentTime = 0")
    menu.select_option(label="Deutsch 5.1 (deu)")
    player = page.locator("#player")
    expect(player, "hls.js on the second track").to_have_attribute(
        "data-audio-track", "1", timeout=30_000
    )
    play_past(page, 2, timeout_s=60)
    expect(page.locator("#player-status")).to_contain_text("Deutsch 5.1 (deu)")
    segments = [u for u in german if urlparse(u).path.endswith(".m4s")]
    assert segments, f"no segment of the second track was loaded: {german}"

    # Subtitles: off at first; chosen, their cues show at the source's times.
    subtitles = page.get_by_label("Subtitles", exact=True)
    expect(subtitles.locator("option")).to_have_text(["Off", "English subtitles (eng)"])
    expect(subtitles).to_have_value("-1")
    page.evaluate("() => { const v = document.getElementById('video'); v.pause(); "
                  "v.currentTime = 0.9; }")  # fmt: skip
    subtitles.select_option(label="English subtitles (eng)")
    expect(player, "hls.js on the subtitles").to_have_attribute(
        "data-subtitle-track", "0", timeout=30_000
    )
    shown: dict[str, Any] = page.wait_for_function(SHOWN_CUES, timeout=30_000).json_value()
    assert [text for _, _, text in shown["cues"]] == [c[2] for c in media.SUBTITLE_CUES], shown
    for (start, end, _), (want_start, want_end, _) in zip(
        shown["cues"], media.SUBTITLE_CUES, strict=True
    ):
        assert abs(start - want_start) < 0.1, shown
        assert abs(end - want_end) < 0.1, shown
    assert shown["active"] == [media.SUBTITLE_CUES[0][2]], shown
    assert player.get_attribute("data-fatal-error") is None
    assert_complete(video_id)


def test_the_storyboard_parser_reads_webvtt_cues(page: Page, servers: Servers) -> None:
    page.goto("/")
    text = (
        "\ufeffWEBVTT\r\n\r\nNOTE not a cue --> whatever\r\n\r\n"
        "first\r\n00:00:00.000 --> 00:00:02.000\r\n"
        "https://s3.example/b/sb.jpg?X-Amz-Signature=a%2Fb&X-Amz-Expires=60#xywh=0,0,160,90\r\n\r\n"
        "00:02.000 --> 00:04.500 align:start\n"
        "https://s3.example/b/sb.jpg?X-Amz-Signature=a%2Fb#xywh=pixel:160,0,160,90\n\n"
        "00:04.500 --> 00:04.000\nhttps://s3.example/b/sb.jpg#xywh=320,0,160,90\n\n"
        "00:00:09.000 --> 00:00:10.000\nhttps://s3.example/b/no-tile.jpg\n\n"
        "01:00:04.500 --> 01:00:06.000\nsheet.jpg#xywh=320,90,160,90\n"
    )
    parsed: dict[str, Any] = page.evaluate(
        """async (text) => {
          const sb = await import(new URL("static/js/storyboard.js", document.baseURI).href);
          const cues = sb.parseStoryboard(text, "https://api.example/v1/videos/x/storyboard.vtt");
          let refused = null;
          try { sb.parseStoryboard("<html>not found</html>"); } catch (e) { refused = e.message; }
          return {cues, refused,
                  at: [0, 1.999, 2, 4.5, 5, 3606].map(t => sb.cueAt(cues, t)?.start ?? null)};
        }""",
        text,
    )
    assert parsed["cues"] == [
        {"start": 0, "end": 2, "x": 0, "y": 0, "w": 160, "h": 90,
         "url": "https://s3.example/b/sb.jpg?X-Amz-Signature=a%2Fb&X-Amz-Expires=60"},
        {"start": 2, "end": 4.5, "x": 160, "y": 0, "w": 160, "h": 90,
         "url": "https://s3.example/b/sb.jpg?X-Amz-Signature=a%2Fb"},
        {"start": 3604.5, "end": 3606, "x": 320, "y": 90, "w": 160, "h": 90,
         "url": "https://api.example/v1/videos/x/sheet.jpg"},
    ]  # fmt: skip
    assert parsed["at"] == [0, 0, 2, None, None, 3604.5], parsed["at"]
    assert parsed["refused"] == "not a WebVTT file", parsed
