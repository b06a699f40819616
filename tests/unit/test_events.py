from __future__ import annotations

import json
import random

import pytest

from vtx.core import events
from vtx.core.db import RetryPolicy


def test_an_event_survives_encode_and_decode() -> None:
    event = events.TranscodeRequested(
        video_id="0b9f0a55-2b8c-4d8f-9a51-3a3c0c1e1a11", bucket="media-videos", key="k", size=10
    )
    assert events.decode(events.encode(event)) == event
    assert json.loads(events.encode(event))["schema"] == events.SCHEMA_VERSION


def test_unknown_fields_are_ignored() -> None:
    payload = events.to_payload(events.StatusUpdate(video_id="v", phase="Queued"))
    payload["added_by_a_newer_producer"] = {"x": 1}
    decoded = events.decode(json.dumps(payload))
    assert isinstance(decoded, events.StatusUpdate)
    assert decoded.phase == "Queued"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type": "status.update", "id": "x", "video_id": "v", "phase": "Q"}', "'schema'"),
        ('{"schema": 1, "type": "video.exploded", "id": "x"}', "unknown event type"),
        ('{"schema": 1, "type": "status.update", "id": "x", "phase": "Q"}', "lacks 'video_id'"),
        (
            '{"schema": 1, "type": "status.update", "id": "x", "video_id": "v", "phase": "Q",'
            ' "progress": "half"}',
            "'progress' has the wrong type",
        ),
        (
            '{"schema": 1, "type": "status.update", "id": "x", "video_id": "v", "phase": "Q",'
            ' "stored_bytes": 1.5}',
            "'stored_bytes' has the wrong type",
        ),
        (
            '{"schema": 1, "type": "transcode.requested", "id": "x", "video_id": "v",'
            ' "bucket": "b", "key": "k", "size": true}',
            "'size' has the wrong type",
        ),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(raw: str | bytes, message: str) -> None:
    with pytest.raises(events.MalformedEvent, match=message):
        events.decode(raw)


def test_seen_events_drops_repeats_and_forgets_the_oldest() -> None:
    seen = events.SeenEvents(capacity=2)
    assert seen.first_time("a")
    assert not seen.first_time("a")
    assert seen.first_time("b")
    assert seen.first_time("c")
    assert seen.first_time("a"), "a fell out of the window"


def test_retry_delays_are_jittered_and_capped() -> None:
    policy = RetryPolicy(attempts=8, base_delay_s=0.01, max_delay_s=0.1)
    rng = random.Random(7)
    delays = [policy.delay(attempt, rng) for attempt in range(8) for _ in range(50)]
    assert all(0 <= d <= 0.1 for d in delays)
    assert max(policy.delay(0, rng) for _ in range(50)) <= 0.01
    assert len({round(d, 6) for d in delays}) > 100, "jitter spreads the retries"
