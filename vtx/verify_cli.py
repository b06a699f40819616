"""``vtx verify [VIDEO_ID | --all]``: every check of :mod:`vtx.core.verify` on one video or all
of them, each discrepancy on a line of its own; exit 1 when there is any."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

from vtx.core import resource as vt
from vtx.core import videos
from vtx.core.db import Database
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.core.verify import Report, verify_video

log = logging.getLogger(__name__)


class Resources:
    """The VideoTranscodes of the cluster by video id, read once (when it can be reached)."""

    def __init__(self, settings: Settings) -> None:
        # video id → {"<namespace>/<name>": status} of every resource naming it
        self._by_video: dict[str, dict[str, Mapping[str, Any]]] | None = None
        try:
            from kubernetes import client

            from vtx.core.kube import load_kube_config

            load_kube_config()
            listing: Any = client.CustomObjectsApi().list_cluster_custom_object(
                vt.GROUP, vt.VERSION, vt.PLURAL, _request_timeout=settings.request_timeout_s
            )
            items: list[dict[str, Any]] = listing["items"]
        except Exception as exc:  # noqa: BLE001 - the resources are one more witness, not needed
            log.warning("resources not compared: %s", str(exc).splitlines()[0][:200])
            return
        self._by_video = {}
        for item in items:
            video_id = (item.get("spec") or {}).get("videoId")
            meta = item["metadata"]
            if video_id:
                ref = f"{meta['namespace']}/{meta['name']}"
                self._by_video.setdefault(str(video_id), {})[ref] = item.get("status") or {}

    def status_of(self, video_id: str, owner: str | None) -> Mapping[str, Any] | None:
        """The status of the resource that owns the video (others naming it were refused)."""
        if self._by_video is None or owner is None:
            return None
        return self._by_video.get(video_id, {}).get(owner)

    @property
    def readable(self) -> bool:
        return self._by_video is not None


def run_verify(settings: Settings, video_id: str | None, *, as_json: bool = False) -> int:
    db = Database(settings.database_url, max_connections=2, application_name="vtx-verify")
    ipfs = IpfsClient(settings.ipfs_api_url, token=settings.ipfs_api_token.value, timeout_s=60)
    store = ObjectStore(settings)
    resources = Resources(settings)
    try:
        ids = [video_id] if video_id else db.transaction(videos.all_video_ids, name="all ids")
        reports = [
            verify_video(
                vid, db, store, ipfs,
                status_of=resources.status_of if resources.readable else None,
            )
            for vid in ids
        ]  # fmt: skip
    finally:
        ipfs.close()
        db.close()
    for report in reports:
        print(_line(report, as_json), flush=True)
    bad = [r for r in reports if not r.ok]
    checked = sum(1 for r in reports if r.status == videos.COMPLETED)
    summary = (
        f"{len(reports)} videos, {checked} complete and checked, "
        f"{sum(len(r.problems) for r in bad)} discrepancies in {len(bad)}"
    )
    print(summary, file=sys.stderr)
    return 1 if bad else 0


def _line(report: Report, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {"video_id": report.video_id, "status": report.status, "ok": report.ok,
             "problems": report.problems, "note": report.note or None},
        )  # fmt: skip
    if report.ok:
        return f"ok    {report.video_id} {report.status}" + (
            f" ({report.note})" if report.note else ""
        )
    lines = [f"FAIL  {report.video_id} {report.status}"]
    lines += [f"      - {p}" for p in report.problems]
    return "\n".join(lines)
