"""The API against the real servers (the app factory in this process, as the aiohttp docs
advise): uploads of every kind, completion, bad input of every kind, the WebSocket hub."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests import media
from tests.integration.test_core import fetch_one
from tests.stack import get, job_namespace, kubectl, stack_env
from vtx.api.app import create_app
from vtx.api.keys import HUB
from vtx.core.db import Cursor, Database
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.core.tokens import hash_token

pytestmark = pytest.mark.stack
MIB = 1024 * 1024
EXPIRED = "vtx_expired-token-for-tests"
AppClient = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    with job_namespace("vtx-test-api") as name:
        yield name


@pytest.fixture(scope="module")
def token() -> str:
    return stack_env()["VTX_API_TOKEN"]


@pytest.fixture
def api_settings(ns: str) -> Settings:
    env = stack_env()
    return Settings.from_env(
        {
            **env,
            "VTX_NAMESPACE": ns,
            "VTX_MULTIPART_THRESHOLD": str(6 * MIB),
            "VTX_UPLOAD_PART_SIZE": str(5 * MIB),
            "VTX_MAX_UPLOAD_BYTES": str(64 * MIB),
            "VTX_WS_QUEUE": "16",
            "VTX_API_TOKENS": f"{env['VTX_API_TOKENS']},old:{hash_token(EXPIRED)}:2020-01-01",
        }
    )


@pytest.fixture
async def client(api_settings: Settings, aiohttp_client: Callable[..., Any]) -> AppClient:
    """The app factory's app, started (and stopped after the test) by aiohttp's fixture."""
    client: AppClient = await aiohttp_client(create_app(api_settings))
    return client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def announce(
    client: AppClient, token: str, path: Path, content_type: str = "video/mp4", **extra: Any
) -> dict[str, Any]:
    body = {"file_name": path.name, "size": path.stat().st_size, "content_type": content_type}
    resp = await client.post("/v1/videos", json={**body, **extra}, headers=auth(token))
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def put_bytes(url: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    """PUT straight to storage, as a browser or curl would; returns the ETag."""
    body = io.BytesIO(data)
    async with aiohttp.ClientSession() as http, http.put(url, data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["ETag"]


async def complete(
    client: AppClient, token: str, video_id: str, **body: Any
) -> aiohttp.ClientResponse:
    return await client.post(f"/v1/videos/{video_id}/complete", json=body, headers=auth(token))


def outbox_sent(db: Database, video_id: str) -> list[Any]:
    def query(cur: Cursor) -> list[Any]:
        cur.execute(
            "SELECT sent_at FROM outbox WHERE key = %s AND topic = 'video-transcode-queue'",
            (video_id,),
        )
        return [r[0] for r in cur.fetchall()]

    return db.transaction(query)


def row_status(db: Database, video_id: str) -> str:
    def query(cur: Cursor) -> str:
        cur.execute("SELECT upload_status FROM videos WHERE id = %s", (video_id,))
        row = cur.fetchone()
        assert row is not None
        return str(row[0])

    return db.transaction(query)


async def wait_for(what: str, check: Callable[[], Any], within_s: float) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {within_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.make_clip(
        tmp_path_factory.mktemp("api") / "clip.mp4", seconds=2, width=640, height=360
    )


async def test_a_presigned_upload_completes_into_a_resource_and_a_queue_event(
    client: AppClient, token: str, clip: Path, ns: str, db: Database
) -> None:
    created = await announce(client, token, clip, title="Holiday", description="beach")
    vid = created["id"]
    assert created["video_id"] == vid
    assert created["s3_path"].startswith(f"videos/{vid}/source/")
    assert created["upload"]["method"] == "PUT"
    assert created["presigned_url"] == created["upload"]["url"]
    assert created["status"] == "awaiting_upload"
    await put_bytes(created["upload"]["url"], clip.read_bytes(), created["upload"]["headers"])
    resp = await complete(client, token, vid)
    assert resp.status == 202, await resp.text()
    done = await resp.json()
    assert (done["status"], done["title"], done["description"]) == ("uploaded", "Holiday", "beach")
    obj = get("videotranscode", f"v-{vid}", ns)
    assert obj["spec"]["source"] == {
        "bucket": "media-videos", "key": created["s3_path"], "size": clip.stat().st_size,
        "contentType": "video/mp4",
    }  # fmt: skip
    sent = await wait_for(
        "the queue event to be published",
        lambda: all(outbox_sent(db, vid)) and outbox_sent(db, vid),
        30,
    )
    assert len(sent) == 1
    assert row_status(db, vid) == "uploaded"

    again = await complete(client, token, vid)
    assert again.status == 202
    assert (await again.json())["status"] == "uploaded"
    assert len(outbox_sent(db, vid)) == 1, "completing twice queues nothing new"
    names = kubectl("get", "vt", "-n", ns, "-o", "name").split()
    assert names.count(f"videotranscode.vtx.dev/v-{vid}") == 1


async def test_a_multipart_upload_interrupted_and_resumed(
    client: AppClient, token: str, tmp_path: Path, ns: str, db: Database
) -> None:
    path = tmp_path / "big.mp4"
    path.write_bytes(os.urandom(12 * MIB + 123))
    created = await announce(client, token, path)
    upload = created["upload"]
    assert upload["method"] == "multipart"
    assert created["presigned_url"] is None
    assert (upload["part_size"], upload["part_count"]) == (5 * MIB, 3)
    data = path.read_bytes()
    first = upload["parts"][0]
    etags = {1: await put_bytes(first["url"], data[: first["size"]])}
    # The connection drops here; later (or after a reload) the client asks what arrived.
    resp = await client.get(f"/v1/videos/{created['id']}/upload", headers=auth(token))
    assert resp.status == 200
    state = (await resp.json())["upload"]
    assert [p["number"] for p in state["uploaded"]] == [1]
    assert [p["number"] for p in state["parts"]] == [2, 3]
    early = await complete(client, token, created["id"], parts=[{"number": 1, "etag": etags[1]}])
    assert early.status == 409
    assert "2 of 3 parts have not arrived" in (await early.json())["error"]["message"]
    for part in state["parts"]:
        start = (part["number"] - 1) * state["part_size"]
        etags[part["number"]] = await put_bytes(part["url"], data[start : start + part["size"]])
    wrong = [{"number": n, "etag": '"0123"' if n == 2 else e} for n, e in sorted(etags.items())]
    bad = await complete(client, token, created["id"], parts=wrong)
    assert bad.status == 400
    assert (await bad.json())["error"]["field"] == "parts[1].etag"
    parts = [{"number": n, "etag": e} for n, e in sorted(etags.items())]
    resp = await complete(client, token, created["id"], parts=parts)
    assert resp.status == 202, await resp.text()
    store = ObjectStore(Settings.from_env(stack_env()))
    info = store.head(created["s3_path"])
    assert info is not None
    assert info.size == len(data)
    assert store.get_bytes(created["s3_path"]) == data
    get("videotranscode", f"v-{created['id']}", ns)
    assert row_status(db, created["id"]) == "uploaded"


async def test_the_original_request_and_answer_still_work(client: AppClient, token: str) -> None:
    resp = await client.post(
        "/upload/video", json={"filename": "old.mp4", "fileSize": 1000}, headers=auth(token)
    )
    assert resp.status == 201
    body = await resp.json()
    assert {"video_id", "presigned_url", "s3_path"} <= set(body)
    assert body["s3_path"] == f"videos/{body['video_id']}/source/old.mp4"
    assert body["presigned_url"].startswith("http://127.0.0.1:7070/media-videos/")


async def test_a_streaming_upload_goes_through_the_api(
    client: AppClient, token: str, clip: Path, ns: str
) -> None:
    created = await announce(client, token, clip)
    resp = await client.put(
        f"/v1/videos/{created['id']}/source", data=clip.read_bytes(), headers=auth(token)
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["status"] == "uploaded"
    get("videotranscode", f"v-{created['id']}", ns)
    again = await client.put(f"/v1/videos/{created['id']}/source", data=b"x", headers=auth(token))
    assert again.status == 409


async def test_reads_list_newest_first_and_page(client: AppClient, token: str, clip: Path) -> None:
    ids = [(await announce(client, token, clip))["id"] for _ in range(3)]
    resp = await client.get("/v1/videos?limit=2")
    page = await resp.json()
    assert [v["id"] for v in page["videos"]] == ids[::-1][:2]
    resp = await client.get(f"/v1/videos?limit=2&cursor={page['next_cursor']}")
    assert (await resp.json())["videos"][0]["id"] == ids[0]
    one = await (await client.get(f"/v1/videos/{ids[0]}")).json()
    assert one["phase"] is None
    assert one["status"] == "awaiting_upload"
    progress = await (await client.get(f"/video/{ids[0]}/progress")).json()
    assert progress == {
        "video_id": ids[0], "status": "awaiting_upload", "phase": None, "progress": 0,
        "renditions": {}, "failure_reason": None, "failure_detail": None,
    }  # fmt: skip
    deleted = await client.delete(f"/v1/videos/{ids[0]}", headers=auth(token))
    assert deleted.status == 202
    assert (await client.get(f"/v1/videos/{ids[0]}")).status == 404


# --- bad input: each a 4xx with a JSON error, and nothing already accepted lost ---------------

BAD_UPLOADS: list[tuple[str, Any, int, str, str | None]] = [
    ("a path", {"file_name": "../../etc/passwd", "size": 10}, 400, "invalid_field", "file_name"),
    ("a NUL", {"file_name": "a\x00.mp4", "size": 10}, 400, "invalid_field", "file_name"),
    ("5,000 characters", {"file_name": "a" * 5000 + ".mp4", "size": 10}, 400, "invalid_field",
     "file_name"),
    ("only dots", {"file_name": "....", "size": 10}, 400, "invalid_field", "file_name"),
    ("a direction override", {"file_name": "cat\u202e4pm.exe", "size": 10}, 400, "invalid_field",
     "file_name"),
    ("size 0", {"file_name": "a.mp4", "size": 0}, 400, "invalid_field", "size"),
    ("a negative size", {"file_name": "a.mp4", "size": -1}, 400, "invalid_field", "size"),
    ("over the limit", {"file_name": "a.mp4", "size": 65 * MIB}, 413, "too_large", "size"),
    ("a non-media type and name", {"file_name": "page.html", "size": 10,
     "content_type": "text/html"}, 400, "unsupported_media_type", "content_type"),
    ("a malformed type", {"file_name": "a.mp4", "size": 10, "content_type": "mp4"}, 400,
     "invalid_field", "content_type"),
    ("a string size", {"file_name": "a.mp4", "size": "10"}, 400, "invalid_field", "size"),
    ("a list body", [1, 2], 400, "invalid_body", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "body", "status", "code", "field"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS]
)
async def test_bad_uploads_are_refused_clearly(
    client: AppClient, token: str, case: str, body: Any, status: int, code: str, field: str | None
) -> None:
    resp = await client.post("/v1/videos", json=body, headers=auth(token))
    assert resp.status == status
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error["code"] == code
    assert error.get("field") == field
    assert error["message"]


async def test_a_unicode_name_is_accepted_with_a_safe_key(client: AppClient, token: str) -> None:
    resp = await client.post(
        "/v1/videos", json={"file_name": "Été à Kyōto 京都.mp4", "size": 10}, headers=auth(token)
    )
    assert resp.status == 201
    body = await resp.json()
    assert body["file_name"] == "Été à Kyōto 京都.mp4"
    assert body["s3_path"].endswith("/source/Ete_a_Kyoto.mp4")


async def test_malformed_bodies(client: AppClient, token: str) -> None:
    for data, ctype, status, code in [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[" * 50_000, "application/json", 400, "invalid_json"),
        (b"file_name=a.mp4", "application/x-www-form-urlencoded", 415, "unsupported_content_type"),
    ]:
        resp = await client.post(
            "/v1/videos", data=data, headers={**auth(token), "Content-Type": ctype}
        )
        assert resp.status == status, data[:20]
        assert (await resp.json())["error"]["code"] == code


async def test_completion_refusals_lose_nothing(
    client: AppClient, token: str, clip: Path, tmp_path: Path, db: Database
) -> None:
    unknown = await complete(client, token, "6f1e4c4e-0000-4000-8000-000000000000")
    assert unknown.status == 404
    created = await announce(client, token, clip)
    vid = created["id"]
    early = await complete(client, token, vid)
    assert early.status == 409
    assert (await early.json())["error"]["code"] == "upload_incomplete"
    # Bytes of another size land at the key (not through the signed URL, which would refuse).
    store = ObjectStore(Settings.from_env(stack_env()))
    store.put_bytes(created["s3_path"], b"short", content_type="video/mp4")
    mismatch = await complete(client, token, vid)
    assert mismatch.status == 422
    assert "5 bytes" in (await mismatch.json())["error"]["message"]
    assert row_status(db, vid) == "awaiting_upload", "the upload can still be made right"
    await put_bytes(created["upload"]["url"], clip.read_bytes(), created["upload"]["headers"])
    assert (await complete(client, token, vid)).status == 202


async def test_a_streaming_upload_larger_or_shorter_than_announced(
    client: AppClient, token: str, clip: Path, db: Database
) -> None:
    created = await announce(client, token, clip)
    path = f"/v1/videos/{created['id']}/source"
    size = clip.stat().st_size

    async def chunks(total: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            n = min(64 * 1024, total - sent)
            sent += n
            yield b"\0" * n

    longer = await client.put(path, data=chunks(size + 100_000), headers=auth(token))
    assert longer.status == 413
    assert "larger than" in (await longer.json())["error"]["message"]
    shorter = await client.put(path, data=chunks(size - 10), headers=auth(token))
    assert shorter.status == 422
    assert row_status(db, created["id"]) == "awaiting_upload"
    ok = await client.put(path, data=io.BytesIO(clip.read_bytes()), headers=auth(token))
    assert ok.status == 202


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "token_missing"),
        ({"Authorization": "Bearer vtx_from-another-deployment"}, "token_unknown"),
        ({"Authorization": f"Bearer {EXPIRED}"}, "token_expired"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "token_missing"),
    ],
)
async def test_writes_need_a_valid_token(
    client: AppClient, headers: dict[str, str], code: str
) -> None:
    resp = await client.post("/v1/videos", json={"file_name": "a.mp4", "size": 1}, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"]["code"] == code
    ws = await client.get("/ws", headers=headers)
    assert ws.status == 401


async def test_unknown_paths_and_methods_answer_in_json(client: AppClient) -> None:
    for method, path, status in [("GET", "/nope", 404), ("PATCH", "/v1/videos", 405),
                                 ("GET", "/v1/videos/not-a-uuid", 404)]:  # fmt: skip
        resp = await client.request(method, path)
        assert resp.status == status
        assert "error" in await resp.json()
        assert resp.headers["X-Request-Id"]


async def test_health_readiness_metrics_and_openapi(client: AppClient) -> None:
    assert (await client.get("/healthz")).status == 200
    first = await client.get("/readyz")
    assert set((await first.json())["checks"]) == {"database", "storage", "kubernetes", "pulsar"}
    deadline = asyncio.get_running_loop().time() + 30
    while (ready := await client.get("/readyz")).status != 200:
        body = await ready.json()
        assert ready.status == 503
        assert asyncio.get_running_loop().time() < deadline, f"never ready: {body}"
        await asyncio.sleep(0.5)
    doc = await (await client.get("/openapi.json")).json()
    routes = {
        f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops if m != "parameters"
    }
    for resource in client.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        for route in resource:
            if route.method != "HEAD" and path and not path.startswith("/static") and path != "/":
                assert f"{route.method} {path}" in routes, f"{route.method} {path} is described"
    metrics = await (await client.get("/metrics")).text()
    assert "vtx_api_requests_total" in metrics


# --- the WebSocket hub ------------------------------------------------------------------------


async def test_websocket_snapshot_events_and_garbage(
    client: AppClient, token: str, clip: Path
) -> None:
    created = await announce(client, token, clip)
    vid = created["id"]
    async with client.ws_connect("/ws", protocols=("vtx.v1", f"bearer.{token}")) as ws:
        assert ws.protocol == "vtx.v1"
        await ws.send_json({"type": "subscribe", "videos": [vid]})
        snapshot = await ws.receive_json(timeout=10)
        assert snapshot["type"] == "snapshot"
        assert [v["id"] for v in snapshot["videos"]] == [vid]
        client.app[HUB].publish(
            vid, "local", {"type": "status", "video_id": vid, "phase": "encoding"}
        )
        client.app[HUB].publish(
            "someone-else", "local", {"type": "status", "video_id": "someone-else"}
        )
        event = await ws.receive_json(timeout=10)
        assert (event["video_id"], event["phase"]) == (vid, "encoding")
        await ws.send_str("garbage")
        error = await ws.receive_json(timeout=10)
        assert error["type"] == "error"
        assert error["error"]["code"] == "bad_message"
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=10))["type"] == "pong"
        await ws.send_bytes(b"\x00\x01")
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == 1003


async def test_a_slow_websocket_client_is_dropped_and_the_others_keep_up(
    client: AppClient, token: str
) -> None:
    vid = "1f0e4c4e-0000-4000-8000-000000000001"
    protocols = ("vtx.v1", f"bearer.{token}")
    hub = client.app[HUB]
    async with (
        client.ws_connect("/ws", protocols=protocols) as fast,
        client.ws_connect("/ws", protocols=protocols) as slow,
    ):
        for ws in (fast, slow):
            await ws.send_json({"type": "subscribe", "all": True})
            assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
        received = 0
        total = 3000
        payload = "x" * 8000  # big messages fill the slow client's buffers quickly

        async def read_fast() -> None:
            nonlocal received
            while received < total:
                msg = await fast.receive_json(timeout=30)
                if msg.get("type") == "status":
                    received += 1

        reader = asyncio.create_task(read_fast())
        for i in range(total):
            hub.publish(vid, "local", {"type": "status", "video_id": vid, "seq": i, "pad": payload})
            await asyncio.sleep(0)
        await asyncio.wait_for(reader, 60)
        assert received == total, "the fast client got every event"
        assert hub.dropped == 1, "the slow client was dropped"
        # The slow client finds its connection closed once it reads again: with the hub's
        # close code when the close frame got through its full buffers, else cut.
        ends = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        seen = 0
        while (msg := await slow.receive(timeout=30)).type not in ends:
            seen += 1
        assert seen < total, "the slow client did not get every event"
        assert msg.type != aiohttp.WSMsgType.CLOSE or msg.data == 4008


# --- tenants -------------------------------------------------------------------------------------

ALICE, BOB, OPS = "vtx_token-of-alice-for-tests", "vtx_token-of-bob-for-tests", "vtx_ops-token"


@pytest.fixture
async def tenants(api_settings: Settings, aiohttp_client: Callable[..., Any]) -> AppClient:
    """The API with reads closed (as the chart installs it) and three tokens: two tenants and
    an admin."""
    import dataclasses

    from vtx.core.settings import Secret

    entries = ",".join(f"{n}:{hash_token(t)}" for n, t in
                       (("alice", ALICE), ("bob", BOB), ("ops", OPS)))  # fmt: skip
    settings = dataclasses.replace(
        api_settings, api_tokens=Secret(entries), api_open_reads=False, api_admins=("ops",)
    )
    client: AppClient = await aiohttp_client(create_app(settings))
    return client


async def test_a_token_sees_only_its_own_videos_and_an_admin_sees_all(
    tenants: AppClient, clip: Path, db: Database
) -> None:
    client = tenants
    created = await announce(client, ALICE, clip)
    vid = created["id"]
    await put_bytes(created["upload"]["url"], clip.read_bytes(), created["upload"]["headers"])
    assert (await complete(client, ALICE, vid)).status == 202
    assert fetch_one(db, "SELECT owner FROM videos WHERE id = %s", vid) == ("alice",)
    paths = [
        ("GET", f"/v1/videos/{vid}"), ("GET", f"/video/{vid}/progress"),
        ("GET", f"/v1/videos/{vid}/upload"), ("GET", f"/v1/videos/{vid}/play/master.m3u8"),
        ("GET", f"/v1/videos/{vid}/play/480p/hls/index.m3u8"),
        ("GET", f"/v1/videos/{vid}/play/480p/video.mp4"),
        ("POST", f"/v1/videos/{vid}/complete"), ("PUT", f"/v1/videos/{vid}/source"),
        ("DELETE", f"/v1/videos/{vid}"),
    ]  # fmt: skip
    for method, path in paths:
        resp = await client.request(method, path, headers=auth(BOB), allow_redirects=False)
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (404, "not_found"), (method, path)
        anonymous = await client.request(method, path, allow_redirects=False)
        assert anonymous.status == 401, (method, path, "reads are closed")
    listed = await (await client.get("/v1/videos?limit=100", headers=auth(BOB))).json()
    assert vid not in [v["id"] for v in listed["videos"]]
    mine = await (await client.get("/v1/videos?limit=100", headers=auth(ALICE))).json()
    assert vid in [v["id"] for v in mine["videos"]]
    for v in mine["videos"]:
        owned = fetch_one(db, "SELECT owner FROM videos WHERE id = %s", v["id"])
        assert owned == ("alice",), "a list holds its owner's videos only"
    seen = await client.get(f"/v1/videos/{vid}", headers=auth(OPS))
    assert seen.status == 200, "an admin sees every video"

    # The WebSocket: Bob's subscription to Alice's video is refused, and his "all" is his own.
    protocols = ("vtx.v1", f"bearer.{BOB}")
    async with client.ws_connect("/ws", protocols=protocols) as ws:
        await ws.send_json({"type": "subscribe", "videos": [vid]})
        answer = await ws.receive_json(timeout=10)
        assert (answer["type"], answer["error"]["code"]) == ("error", "not_found"), answer
        await ws.send_json({"type": "subscribe", "all": True})
        snapshot = await ws.receive_json(timeout=10)
        while snapshot["type"] != "snapshot":
            snapshot = await ws.receive_json(timeout=10)
        assert vid not in [v["id"] for v in snapshot["videos"]]
        sent = client.app[HUB].publish(vid, "alice", {"type": "status", "video_id": vid})
        assert sent == 0, "Bob's client does not follow Alice's video"
    async with client.ws_connect("/ws", protocols=("vtx.v1", f"bearer.{OPS}")) as ws:
        await ws.send_json({"type": "subscribe", "all": True})
        while (msg := await ws.receive_json(timeout=10))["type"] != "snapshot":
            pass
        assert client.app[HUB].publish(vid, "alice", {"type": "status", "video_id": vid}) == 1
        while (msg := await ws.receive_json(timeout=10))["type"] != "status":
            pass
        assert msg["video_id"] == vid, "an admin follows every video"
    deleted = await client.delete(f"/v1/videos/{vid}", headers=auth(ALICE))
    assert deleted.status == 202
