"""What every fault test shares beside the upload flow (tests/uploads.py): short sources,
a WebSocket client that records the status events it is told, and the invariants checked at
the end: every accepted upload is Ready exactly once, whole across SQL, S3, IPFS and its
resource, with nothing left over (no running Job, no object or pin that no row names) and its
Ready event delivered."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests import media
from tests.services import Process
from tests.stack import kubectl, wait_until
from tests.uploads import token
from tests.verify import assert_complete
from vtx.core import media as layout
from vtx.core.db import Cursor, Database
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore


def clips(folder: Path, count: int, *, seconds: float = 2, first_tone: int = 300) -> list[Path]:
    """``count`` short 480p sources, each with a tone of its own (outputs no other shares)."""
    return [
        media.make_clip(folder / f"clip-{first_tone + i}.mp4", seconds=seconds, width=854,
                        height=480, fps=25, tone=first_tone + 7 * i)
        for i in range(count)
    ]  # fmt: skip


@dataclass
class EventLog:
    """A dashboard's WebSocket, subscribed to every video: the events it was told, by video.
    It reconnects when the connection drops (and is told the current state on subscribing)."""

    api: Process
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reconnects: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> EventLog:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=15)

    async def _run(self) -> None:
        url = self.api.url.replace("http://", "ws://") + "/ws"
        while not self._stop.is_set():
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.ws_connect(url, protocols=("vtx.v1", f"bearer.{token()}")) as ws,
                ):
                    await ws.send_json({"type": "subscribe", "all": True})
                    while not self._stop.is_set():
                        try:
                            msg = await ws.receive(timeout=0.5)
                        except TimeoutError:
                            continue
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        body = json.loads(msg.data)
                        if body.get("type") == "status" and body.get("rendition") is None:
                            self.events.setdefault(body["video_id"], []).append(body)
            except (aiohttp.ClientError, OSError):
                pass
            if not self._stop.is_set():
                self.reconnects += 1
                await asyncio.sleep(1)

    def phases(self, video_id: str) -> list[str]:
        return [e["phase"] for e in self.events.get(video_id, [])]


def resources_by_video(ns: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in json.loads(kubectl("get", "videotranscodes", "-n", ns, "-o", "json"))["items"]:
        found.setdefault(item["spec"]["videoId"], []).append(item["metadata"]["name"])
    return found


def named_objects(db: Database, video_id: str) -> set[str]:
    """Every S3 key the rows name for a video (outputs, segments, init segments, master)."""

    def read(cur: Cursor) -> set[str]:
        cur.execute(
            "SELECT file_path, format, resolution FROM transcodes"
            " WHERE video_id = %s AND storage_type = 's3'",
            (video_id,),
        )
        keys = set()
        for path, fmt, rendition in cur.fetchall():
            keys.add(str(path))
            if fmt == "hls":
                keys.add(f"{layout.rendition_prefix(video_id, rendition)}/hls/{layout.INIT_NAME}")
        cur.execute(
            "SELECT s.file_path FROM transcode_segments s JOIN transcodes t"
            " ON t.id = s.transcode_id WHERE t.video_id = %s AND s.storage_type = 's3'",
            (video_id,),
        )
        keys.update(str(row[0]) for row in cur.fetchall())
        return keys

    return db.transaction(read)


def named_cids(db: Database) -> set[str]:
    """Every CID any row names: outputs, init segments, segments, sources."""

    def read(cur: Cursor) -> set[str]:
        cur.execute(
            "SELECT file_cid FROM transcodes UNION SELECT init_cid FROM transcodes"
            " UNION SELECT file_cid FROM transcode_segments UNION SELECT ipfs_cid FROM videos"
        )
        return {str(row[0]) for row in cur.fetchall() if row[0]}

    return db.transaction(read)


def _upload_statuses(cur: Cursor, ids: list[str]) -> dict[str, str]:
    cur.execute("SELECT id::TEXT, upload_status FROM videos WHERE id = ANY(%s::UUID[])", (ids,))
    return {str(vid): str(status) for vid, status in cur.fetchall()}


def wait_ingests_ended(ns: str, timeout: float) -> None:
    """Until no resource of ``ns`` is still pinning its original (``status.ingest`` Running):
    the ingest Job runs beside the transcodes, and a video is Ready without waiting for it."""

    def pinning() -> list[str]:
        items = json.loads(kubectl("get", "videotranscodes", "-n", ns, "-o", "json"))["items"]
        return [
            str(item["metadata"]["name"])
            for item in items
            if ((item.get("status") or {}).get("ingest") or {}).get("phase") == "Running"
        ]

    try:
        wait_until("every original's ingest to end", lambda: not pinning(), timeout=timeout)
    except TimeoutError as exc:
        pods = kubectl("get", "pods", "-n", ns, "-l", "vtx.dev/job-kind=ingest", "-o", "wide")
        raise AssertionError(f"{exc}: still pinning {pinning()}\n{pods}") from None


def running_pods(ns: str) -> list[str]:
    """The pods in ``ns`` whose containers have not all ended. A Job whose pod exited is done
    for the operator at once, while its own ``status.active`` drops a few seconds later."""
    pods = json.loads(kubectl("get", "pods", "-n", ns, "-o", "json"))["items"]
    running = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        containers = status.get("containerStatuses") or []
        if not containers or any("terminated" not in (c.get("state") or {}) for c in containers):
            running.append(str(pod["metadata"]["name"]))
    return sorted(running)


def check_invariants(
    ids: list[str], *, ns: str, db: Database, store: ObjectStore, ipfs: IpfsClient,
    pins_before: set[str], events: EventLog | None = None, ready_timeout: float = 60,
    ingest_timeout: float = 120,
) -> dict[str, int]:  # fmt: skip
    """Everything a user could notice about the accepted uploads ``ids``, once they are Ready:
    one resource each, whole everywhere (`vtx verify`), no Job still running once the originals'
    pinning has ended (Ready does not wait for it), no object or pin that no row names, and (with
    ``events``) a Ready event told to the dashboard."""
    assert len(set(ids)) == len(ids), "an upload was accepted twice under one id"
    resources = resources_by_video(ns)
    statuses = db.transaction(lambda cur: _upload_statuses(cur, ids))
    lost = sum(1 for vid in ids if statuses.get(vid) != "completed" or vid not in resources)
    duplicated = sum(max(0, len(resources.get(vid, [])) - 1) for vid in ids)
    assert {vid: len(resources.get(vid, [])) for vid in ids} == dict.fromkeys(ids, 1), resources
    assert_complete(*ids)
    wait_ingests_ended(ns, ingest_timeout)
    running = running_pods(ns)
    assert running == [], f"Job pods still running after every video is Ready: {running}"
    for vid in ids:
        keys = {k for k in store.iter_keys(f"{layout.video_prefix(vid)}/") if "/source/" not in k}
        extra = keys - named_objects(db, vid) - {layout.master_key(vid)}
        assert not extra, f"{vid}: objects no row names: {sorted(extra)[:5]}"
    orphans = ipfs.recursive_pins() - pins_before - named_cids(db)
    if orphans:
        jobs = kubectl("get", "jobs,pods", "-n", ns, "-o", "wide")
        raise AssertionError(f"pins no row names: {sorted(orphans)[:5]}\n{jobs}")
    if events is not None:

        def told() -> bool:
            return all("Ready" in events.phases(vid) for vid in ids)

        try:
            wait_until("a Ready event for every video", told, timeout=ready_timeout)
        except TimeoutError as exc:
            missing = [vid for vid in ids if "Ready" not in events.phases(vid)]
            raise AssertionError(f"{exc}: none for {missing[:5]} ({len(missing)})") from None
        for vid in ids:
            told_ids = [e["id"] for e in events.events.get(vid, [])]
            assert len(told_ids) == len(set(told_ids)), f"{vid}: an event told twice: {told_ids}"
    return {"uploads": len(ids), "lost": lost, "duplicated": duplicated}


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 1)


FIGURES = Path(os.environ.get("VTX_FAULT_FIGURES", "/dev/null"))


def record(fault: str, window: str, counts: dict[str, int], heal_s: float) -> None:
    """One row of the README's fault table (``make test-faults`` collects them)."""
    with FIGURES.open("a") as out:
        out.write(json.dumps({"fault": fault, "window": window, **counts, "heal_s": heal_s}))
        out.write("\n")
