"""Signed webhooks as an app receives them: a real HTTP receiver on this machine gets the owner's
events, signed so that the `standardwebhooks` package verifies them; while it is down the
deliveries wait and arrive after it returns; a URL of a private address is refused unless the
API is set to allow them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests import media
from tests.receiver import Receiver
from tests.services import Process, api_process, free_port, operator_process, started
from tests.stack import job_namespace, stack_env, wait_until
from tests.uploads import announce_and_put, complete, upload, wait_finished
from tests.verify import assert_complete
from vtx.core.tokens import hash_token, new_token

pytestmark = pytest.mark.stack
DOWN_S = 60  # how long the receiver stays down after the first refused delivery


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    with job_namespace("vtx-test-webhooks") as name:
        yield name


@pytest.fixture(scope="module")
def token() -> str:
    """A token of an owner of its own: no other test's webhooks or videos are this one's."""
    return new_token()


@pytest.fixture(scope="module")
def tokens(token: str) -> dict[str, str]:
    owner = f"hooks-{uuid.uuid4().hex[:12]}"
    return {"VTX_API_TOKENS": f"{stack_env()['VTX_API_TOKENS']},{owner}:{hash_token(token)}"}


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, ns: str, tokens: dict[str, str]
) -> Iterator[Process]:
    """An API that delivers to receivers on this machine (private addresses allowed)."""
    env = {"VTX_WEBHOOK_ALLOW_PRIVATE": "true", "VTX_WEBHOOK_FIRST_RETRY_SECONDS": "5", **tokens}
    with started(api_process(tmp_path_factory.mktemp("api") / "api.log", ns, env=env)) as proc:
        yield proc


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory, ns: str) -> Iterator[Process]:
    process = operator_process(
        tmp_path_factory.mktemp("operator") / "operator.log", ns,
        health_port=free_port(), metrics_port=free_port(),
    )  # fmt: skip
    with started(process):
        yield process


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(api: Process, token: str, url: str, types: list[str]) -> requests.Response:
    return requests.post(
        f"{api.url}/v1/webhooks", json={"url": url, "event_types": types}, headers=_auth(token),
        timeout=10,
    )  # fmt: skip


def deliveries(api: Process, token: str, endpoint: str) -> list[dict[str, Any]]:
    got = requests.get(
        f"{api.url}/v1/webhooks/{endpoint}/deliveries", headers=_auth(token), timeout=10
    )
    assert got.status_code == 200, got.text
    items: list[dict[str, Any]] = got.json()["deliveries"]
    return items


def test_private_addresses_are_refused_unless_allowed(
    tmp_path: Path, ns: str, token: str, tokens: dict[str, str]
) -> None:
    with started(api_process(tmp_path / "api.log", ns, env=tokens)) as strict:
        private = ("http://10.0.0.5/hook", "http://127.0.0.1:9/hook", "http://[::1]/hook",
                   "http://169.254.169.254/latest/meta-data", "http://localhost/hook")  # fmt: skip
        for url in private:
            refused = register(strict, token, url, ["video.ready"])
            assert refused.status_code == 400, (url, refused.text)
            error = refused.json()["error"]
            assert error["field"] == "url", error
            assert "private" in error["message"], error
        bad = register(strict, token, "ftp://example.com/x", ["video.ready"])
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["field"] == "url", bad.text
        unknown = register(strict, token, "http://10.0.0.5/hook", ["video.exploded"])
        assert unknown.status_code == 400, unknown.text
        assert "video.exploded" in unknown.json()["error"]["message"], unknown.text
        listed = requests.get(f"{strict.url}/v1/webhooks", headers=_auth(token), timeout=10)
        assert listed.status_code == 200, listed.text
        assert listed.json() == {"webhooks": []}, "nothing refused was registered"


def test_signed_events_reach_a_receiver_that_was_down(
    api: Process, operator: Process, token: str, tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    receiver = Receiver(free_port())
    types = ["upload.completed", "video.ready", "video.failed", "video.deleted"]
    made = register(api, token, receiver.url, types)
    assert made.status_code == 201, made.text
    endpoint, secret = made.json()["id"], made.json()["secret"]
    listed = requests.get(f"{api.url}/v1/webhooks", headers=_auth(token), timeout=10).json()
    assert [w["id"] for w in listed["webhooks"]] == [endpoint]
    assert "secret" not in listed["webhooks"][0], "the secret is shown once, at registration"
    try:
        folder = tmp_path_factory.mktemp("media")
        clip = media.make_clip(folder / "hooked.mp4", seconds=2, width=854, height=480, tone=910)
        # The receiver is down: the upload's event is refused, and tried again later.
        video_id = upload(api, token, clip)
        refused = wait_until(
            "a refused delivery in the log",
            lambda: next((d for d in deliveries(api, token, endpoint)
                          if d["attempts"] >= 1 and d["last_error"]), None),
            timeout=60,
        )  # fmt: skip
        down_since = time.monotonic()
        assert refused["state"] == "pending", refused
        text = media.make_text_file(folder / "notes")
        failing = announce_and_put(api, token, text, "application/octet-stream")
        complete(api, token, failing, expect=202)
        got = wait_finished(api, [video_id, failing], timeout=300, operator=operator)
        assert got[video_id]["phase"] == "Ready", got
        assert got[failing]["phase"] == "Failed", got
        time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_since)))
        assert receiver.got == []
        receiver.start()
        back = time.monotonic()
        ready = wait_until(
            "video.ready at the receiver after it came back",
            lambda: receiver.of(secret, "video.ready", video_id), timeout=180, every=1,
        )  # fmt: skip
        waited_s = time.monotonic() - back
        view = got[video_id]
        assert ready["data"]["root_cid"] == view["cid"], (ready, view)
        assert ready["data"]["playback"]["hls"].endswith(f"/v1/videos/{video_id}/play/master.m3u8")
        assert ready["data"]["renditions"] == ["480p"]
        assert ready["data"]["images"]["poster"].endswith(
            f"/v1/videos/{video_id}/play/images/poster.jpg"
        ), ready
        wait_until(
            "upload.completed and video.failed at the receiver",
            lambda: (receiver.of(secret, "upload.completed", video_id)
                     and receiver.of(secret, "video.failed", failing)),
            timeout=120, every=1,
        )  # fmt: skip
        failed = receiver.of(secret, "video.failed", failing)
        assert failed is not None
        assert failed["data"]["reason"] == "This file is a text file, not a video.", failed
        log = {d["event_type"]: d for d in deliveries(api, token, endpoint)
               if d["video_id"] == video_id}  # fmt: skip
        assert log["video.ready"]["state"] == "delivered", log
        assert log["upload.completed"]["attempts"] >= 2, log  # refused at least once, then taken
        # A body changed on the way fails verification.
        headers, body = receiver.got[0]
        tampered = json.loads(body)
        tampered["data"]["video_id"] = "someone-else"
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(json.dumps(tampered), headers)
        assert_complete(video_id)
        deleted = requests.delete(f"{api.url}/v1/videos/{video_id}", headers=_auth(token),
                                  timeout=10)  # fmt: skip
        assert deleted.status_code == 202, deleted.text
        wait_until(
            "video.deleted at the receiver",
            lambda: receiver.of(secret, "video.deleted", video_id), timeout=60, every=1,
        )  # fmt: skip
        ids = [headers["webhook-id"] for headers, _ in receiver.got]
        print(f"receiver down {DOWN_S} s; video.ready arrived {waited_s:.1f} s after it came back;"
              f" {len(ids)} deliveries, {len(set(ids))} distinct")  # fmt: skip
    finally:
        receiver.stop()
        requests.delete(f"{api.url}/v1/webhooks/{endpoint}", headers=_auth(token), timeout=10)
