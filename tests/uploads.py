"""The REST flow a client follows to upload (announce, PUT to storage, complete), for many
files at once, and the wait for the uploads to finish as the API tells it."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

from tests.services import Process
from tests.stack import stack_env, wait_until

FINISHED = ("Ready", "Failed")


def upload(api: Process, token: str, path: Path) -> str:
    """The REST flow a client follows: announce, PUT to storage, complete."""
    vid = announce_and_put(api, token, path)
    complete(api, token, vid, expect=202)
    return vid


def announce_and_put(api: Process, token: str, path: Path, content_type: str = "video/mp4") -> str:
    """An upload announced as ``content_type`` and its bytes PUT to storage with the headers
    the answer lists (that type among them), not completed: the video's id."""
    created = requests.post(
        f"{api.url}/v1/videos",
        json={"file_name": path.name, "size": path.stat().st_size, "content_type": content_type},
        headers=bearer(token),
        timeout=30,
    )
    assert created.status_code == 201, f"{path.name} as {content_type}: {created.text}"
    body: dict[str, Any] = created.json()
    assert body["upload"]["headers"]["Content-Type"] == content_type.lower()
    with path.open("rb") as f:
        put = requests.put(
            body["upload"]["url"], data=f, headers=body["upload"]["headers"], timeout=120
        )
    assert put.status_code == 200, put.text
    return str(body["id"])


def complete(api: Process, token: str, vid: str, expect: int) -> dict[str, Any]:
    """POST complete, which must answer ``expect``: its JSON body."""
    done = requests.post(
        f"{api.url}/v1/videos/{vid}/complete", json={},
        headers=bearer(token), timeout=120,
    )  # fmt: skip
    assert done.status_code == expect, done.text
    answer: dict[str, Any] = done.json()
    return answer


def bearer(token: str) -> dict[str, str]:
    """The header that carries an API token."""
    return {"Authorization": f"Bearer {token}"}


def token() -> str:
    return stack_env()["VTX_API_TOKEN"]


def upload_all(api: Process, paths: Iterable[Path], workers: int = 4) -> list[str]:
    """Each path uploaded as a client does (create, PUT, complete): the accepted ids."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: upload(api, token(), p), paths))


def views(api: Process, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    headers = bearer(token())
    got = {}
    for vid in ids:
        resp = requests.get(f"{api.url}/v1/videos/{vid}", headers=headers, timeout=10)
        assert resp.status_code == 200, f"GET /v1/videos/{vid}: {resp.status_code} {resp.text}"
        got[vid] = resp.json()
    return got


def wait_finished(
    api: Process, ids: list[str], timeout: float, operator: Process | None = None,
    every: float = 2,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The API's view of every video once each is Ready or Failed."""

    def finished() -> dict[str, dict[str, Any]] | None:
        got = views(api, ids)
        return got if all(v["phase"] in FINISHED for v in got.values()) else None

    try:
        return wait_until(f"{len(ids)} uploads to finish", finished, timeout=timeout, every=every)
    except TimeoutError as exc:
        phases = {vid: v["phase"] for vid, v in views(api, ids).items()}
        tail = operator.tail() if operator is not None else ""
        raise TimeoutError(f"{exc}: {phases}\n{tail}") from None
