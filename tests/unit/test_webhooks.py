"""Signed webhooks without a database: what a URL and event list must be, the retry schedule,
signatures that the standardwebhooks package verifies, and one attempt against a local server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vtx.core import webhook_delivery, webhooks
from vtx.core.db import Cursor, Database
from vtx.core.webhooks import WebhookError, check_event_types, check_url

PUBLIC = "93.184.216.34"
PUBLIC6 = "2606:2800:220:1:248:1893:25c8:1946"


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """A resolver that knows ``table``'s hosts and echoes IP literals; others do not resolve."""

    def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


DNS = resolver(
    {
        "hooks.example.com": [PUBLIC],
        "both.example.com": [PUBLIC6, PUBLIC],
        "internal.example.com": ["10.0.0.5"],
        "mixed.example.com": [PUBLIC, "127.0.0.1"],
        "mapped.example.com": ["::ffff:127.0.0.1"],
        "nothing.example.com": [],
    }
)


def refused(raw: object, *, allow_private: bool = False) -> str:
    with pytest.raises(WebhookError) as info:
        check_url(raw, allow_private=allow_private, resolve=DNS)
    return str(info.value)


# --- event types ------------------------------------------------------------------------------
def test_event_types_come_back_sorted() -> None:
    assert check_event_types(["video.ready", "upload.completed"]) == (
        "upload.completed",
        "video.ready",
    )
    assert check_event_types(list(webhooks.EVENT_TYPES)) == tuple(sorted(webhooks.EVENT_TYPES))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "non-empty list"),
        ([], "non-empty list"),
        ("video.ready", "non-empty list"),
        ({"video.ready": True}, "non-empty list"),
        (["video.exploded"], "unknown event type 'video.exploded'"),
        (["video.ready", "video.ready"], "'video.ready' is listed more than once"),
        ([1], "must be a string"),
        (["video.ready"] * 5, "at most 4"),
    ],
)
def test_bad_event_types_are_refused(raw: object, message: str) -> None:
    with pytest.raises(WebhookError, match=message):
        check_event_types(raw)


# --- URLs -------------------------------------------------------------------------------------
def test_a_public_url_passes_with_its_addresses() -> None:
    checked = check_url("https://Hooks.Example.com/vtx?x=1", allow_private=False, resolve=DNS)
    assert checked == webhooks.CheckedUrl(
        "https://Hooks.Example.com/vtx?x=1", "hooks.example.com", 443, (PUBLIC,)
    )
    assert check_url("http://hooks.example.com", allow_private=False, resolve=DNS).port == 80
    assert check_url("http://hooks.example.com:8080/", allow_private=False, resolve=DNS).port == (
        8080
    )
    both = check_url("https://both.example.com/", allow_private=False, resolve=DNS)
    assert both.addresses == (PUBLIC6, PUBLIC)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "0.0.0.0",  # noqa: S104 - a refused address, nothing binds here
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.18.0.1",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[ff02::1]",
        "[ff0e::1]",  # global-scope multicast
        "[::ffff:127.0.0.1]",
        "[::ffff:10.0.0.5]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",  # IPv4-compatible (deprecated)
        "[2002:7f00:1::]",  # 6to4 around 127.0.0.1
        "[64:ff9b::a00:5]",  # NAT64 around 10.0.0.5
        "[64:ff9b:1::1]",  # local-use NAT64
        "[2001:db8::1]",  # documentation
    ],
)
def test_ip_literals_that_are_not_global_are_refused(address: str) -> None:
    message = refused(f"http://{address}:8080/hook")
    assert message.startswith(webhooks.PRIVATE_ADDRESS)
    assert message.endswith(f"({address.strip('[]')})")


def test_a_mapped_address_is_judged_as_its_ipv4() -> None:
    assert check_url(f"http://[::ffff:{PUBLIC}]/", allow_private=False, resolve=DNS).port == 80
    assert check_url(f"https://[{PUBLIC6}]/", allow_private=False, resolve=DNS).host == PUBLIC6
    assert refused("https://mapped.example.com/").endswith("(::ffff:127.0.0.1)")


def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    assert refused("https://internal.example.com/") == (
        "webhook URLs may not point at private or loopback addresses (10.0.0.5)"
    )
    assert "(127.0.0.1)" in refused("https://mixed.example.com/")


def test_private_addresses_pass_when_allowed() -> None:
    checked = check_url("http://internal.example.com:9000/", allow_private=True, resolve=DNS)
    assert (checked.host, checked.port, checked.addresses) == (
        "internal.example.com",
        9000,
        ("10.0.0.5",),
    )
    assert check_url("http://[::1]/", allow_private=True, resolve=DNS).addresses == ("::1",)


def test_the_default_resolver_resolves_literals_and_localhost() -> None:
    assert refused_by_default("http://127.0.0.1/").endswith("(127.0.0.1)")
    assert "private or loopback" in refused_by_default("http://localhost:8080/")
    assert check_url("http://127.0.0.1:9/", allow_private=True).addresses == ("127.0.0.1",)


def refused_by_default(raw: str) -> str:
    with pytest.raises(WebhookError) as info:
        check_url(raw, allow_private=False)
    return str(info.value)


@pytest.mark.parametrize("raw", ["https://nothing.example.com/", "https://unknown.example.com/"])
def test_hosts_that_do_not_resolve_are_refused(raw: str) -> None:
    assert "does not resolve" in refused(raw)
    assert "does not resolve" in refused(raw, allow_private=True)


def test_a_resolver_that_fails_oddly_means_no_address() -> None:
    def broken(host: str, port: int) -> list[str]:
        raise UnicodeError("label too long")

    with pytest.raises(WebhookError, match="does not resolve"):
        check_url("https://hooks.example.com/", allow_private=True, resolve=broken)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "non-empty string"),
        (42, "non-empty string"),
        ("", "non-empty string"),
        ("https://hooks.example.com/" + "a" * 2048, "at most 2048"),
        ("ftp://hooks.example.com/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("gopher://hooks.example.com:70/", "http:// or https://"),
        ("hooks.example.com/hook", "http:// or https://"),
        ("//hooks.example.com/hook", "http:// or https://"),
        ("https://user:pass@hooks.example.com/", "user name or password"),
        ("https://user@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com@10.0.0.5/", "user name or password"),
        ("https://hooks.example.com/#frag", "fragment"),
        ("https://hooks.example.com/#", "fragment"),
        ("https://hooks.example.com:0/", "between 1 and 65535"),
        ("https://hooks.example.com:65536/", "not a valid URL"),
        ("https://hooks.example.com:https/", "not a valid URL"),
        ("http:///hook", "no host"),
        ("https://:443/", "no host"),
        ("http://[::1/", "not a valid URL"),
        ("http://[hooks.example.com]/", "not a valid URL|only an IPv6 address"),
        ("http://%31%32%37.0.0.1/", "not a valid host name"),
        ("http://hooks.example.com\\@10.0.0.5/", "user name or password"),
        ("http://hooks.example.com /", "printable ASCII"),
        ("http://hooks.example.com/\nHost: x", "printable ASCII"),
        ("http://hooks.example.com/\x00", "printable ASCII"),
        ("https://bücher.example/", "printable ASCII"),
    ],
)
def test_malformed_urls_are_refused(raw: object, message: str) -> None:
    with pytest.raises(WebhookError, match=message):
        check_url(raw, allow_private=True, resolve=DNS)


# --- retries ----------------------------------------------------------------------------------
def test_the_retry_delay_doubles_up_to_its_cap() -> None:
    delays = [webhooks.retry_delay(n, 30.0) for n in range(1, 10)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert webhooks.retry_delay(0, 5.0) == 5.0
    assert webhooks.retry_delay(10_000, 5.0) == 3600.0
    assert webhooks.retry_delay(3, 1.0, cap_s=2.5) == 2.5


def test_retries_stop_after_a_day() -> None:
    created = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert not webhooks.gives_up(created, created + timedelta(hours=23, minutes=59))
    assert webhooks.gives_up(created, created + timedelta(days=1))
    assert webhooks.gives_up(created, created + timedelta(seconds=11), window_s=10)
    # A naive time is UTC; another zone is converted.
    assert not webhooks.gives_up(
        created, datetime(2026, 2, 1, 13, 0, tzinfo=timezone(timedelta(hours=2)))
    )
    assert webhooks.gives_up(created.replace(tzinfo=None), created + timedelta(days=2))


# --- signatures and the envelope --------------------------------------------------------------
def test_secrets_are_24_random_bytes_the_package_accepts() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert secret != webhooks.new_secret()
    Webhook(secret)


def test_signed_headers_verify_and_a_changed_body_does_not() -> None:
    secret = webhooks.new_secret()
    now = datetime.now(UTC)
    body = json.dumps(webhooks.payload("video.ready", {"video_id": "v1"}, now))
    headers = webhooks.signed_headers(secret, "msg_1", now, body)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert Webhook(secret).verify(body, headers)["data"] == {"video_id": "v1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("v1", "v2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_2"})


def test_the_signature_is_the_spec_hmac() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    when = datetime(2026, 1, 31, 12, 0, 0, 500_000, tzinfo=UTC)
    headers = webhooks.signed_headers(secret, "msg_x", when, '{"a":1}')
    expected = hmac.new(
        b"k" * 24, f'msg_x.{int(when.timestamp())}.{{"a":1}}'.encode(), hashlib.sha256
    )
    assert headers["webhook-timestamp"] == "1769860800"
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected.digest()).decode()


def test_a_timestamp_in_another_zone_is_signed_as_the_same_instant() -> None:
    secret = webhooks.new_secret()
    here = datetime.now(timezone(timedelta(hours=-5)))
    headers = webhooks.signed_headers(secret, "msg_1", here, "{}")
    assert headers["webhook-timestamp"] == str(int(here.timestamp()))
    Webhook(secret).verify("{}", headers)


def test_the_envelope() -> None:
    when = datetime(2026, 1, 31, 13, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=1)))
    data = {"video_id": "v1"}
    envelope = webhooks.payload("video.failed", data, when)
    assert envelope == {
        "type": "video.failed",
        "timestamp": "2026-01-31T12:00:00.123Z",
        "data": {"video_id": "v1"},
    }
    assert envelope["data"] is not data


def test_message_ids() -> None:
    msg = webhooks.new_message_id()
    assert msg.startswith("msg_")
    assert len(msg) == 36
    int(msg[4:], 16)


# --- one attempt, against a server on this machine --------------------------------------------
class Receiver:
    """A local HTTP server that records each request and answers with the next status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], str]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("location", "http://127.0.0.1:9/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def due(url: str, *, attempts: int = 0, created_at: datetime | None = None) -> webhooks.Due:
    return webhooks.Due(
        id="msg_" + "0" * 32,
        endpoint_id="6f1c2f0e-58f4-4b0e-9a57-7c1f0e0c2a11",
        url=url,
        secret=SECRET,
        event_type="video.ready",
        payload=webhooks.payload("video.ready", {"video_id": "v1"}, datetime.now(UTC)),
        attempts=attempts,
        created_at=created_at or datetime.now(UTC),
    )


SECRET = webhooks.new_secret()
LOCAL = resolver({"hooks.test": ["127.0.0.1"], "v6first.test": ["::1", "127.0.0.1"]})


def deliverer(*, allow_private: bool = True) -> webhook_delivery.Deliverer:
    db = cast(Database, None)  # attempt() does not touch the database
    return webhook_delivery.Deliverer(
        db, allow_private=allow_private, first_retry_s=30, timeout_s=5, resolve=LOCAL
    )


def test_an_attempt_posts_the_signed_envelope_to_the_checked_address(receiver: Receiver) -> None:
    target = due(f"http://hooks.test:{receiver.port}/in?x=1")
    assert deliverer().attempt(target) == webhook_delivery.Outcome(True, 204, None)
    [(path, headers, body)] = receiver.requests
    assert path == "/in?x=1"
    assert headers["Host"] == f"hooks.test:{receiver.port}"
    assert headers["webhook-id"] == target.id
    assert json.loads(body) == target.payload
    assert Webhook(SECRET).verify(body, headers) == target.payload


def test_the_next_address_is_tried_when_the_first_refuses(receiver: Receiver) -> None:
    outcome = deliverer().attempt(due(f"http://v6first.test:{receiver.port}/"))
    assert outcome.ok
    assert len(receiver.requests) == 1


def test_other_answers_are_failures_and_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.statuses = [500, 302]
    url = f"http://hooks.test:{receiver.port}/"
    assert deliverer().attempt(due(url)) == webhook_delivery.Outcome(
        False, 500, "the endpoint answered HTTP 500"
    )
    assert deliverer().attempt(due(url)).status == 302
    assert [r[0] for r in receiver.requests] == ["/", "/"]


def test_a_url_that_now_resolves_privately_is_a_failed_attempt(receiver: Receiver) -> None:
    outcome = deliverer(allow_private=False).attempt(due(f"http://hooks.test:{receiver.port}/"))
    assert outcome == webhook_delivery.Outcome(
        False, None, "webhook URLs may not point at private or loopback addresses (127.0.0.1)"
    )
    assert receiver.requests == []


def test_a_refused_connection_is_a_failed_attempt() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    outcome = deliverer().attempt(due(f"http://hooks.test:{port}/"))
    assert (outcome.ok, outcome.status) == (False, None)
    assert "ConnectionError" in str(outcome.error)
    assert SECRET not in str(outcome.error)


class OneRow:
    """Stands in for the database: hands out ``due`` once, keeps what is recorded, and runs
    each transaction ``runs`` times (as a serialization conflict would)."""

    def __init__(self, row: webhooks.Due, runs: int = 1) -> None:
        self.row: webhooks.Due | None = row
        self.runs = runs
        self.recorded: list[dict[str, Any]] = []

    def transaction(self, work: Callable[[Cursor], Any], *, name: str = "") -> Any:
        row = self.row
        for _ in range(self.runs):
            self.row = row
            result = work(cast(Cursor, None))
        return result

    def claim_due(self, cur: Cursor, now: datetime, limit: int) -> list[webhooks.Due]:
        row, self.row = self.row, None
        return [] if row is None else [row]

    def record_attempt(self, cur: Cursor, delivery_id: str, **kwargs: Any) -> None:
        self.recorded.append({"id": delivery_id, **kwargs})


def run_once(monkeypatch: pytest.MonkeyPatch, fake: OneRow) -> int:
    monkeypatch.setattr(webhooks, "claim_due", fake.claim_due)
    monkeypatch.setattr(webhooks, "record_attempt", fake.record_attempt)
    worker = webhook_delivery.Deliverer(
        cast(Database, fake), allow_private=True, first_retry_s=30, timeout_s=5, resolve=LOCAL
    )
    return worker.deliver_once()


def test_a_delivered_attempt_is_recorded(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    fake = OneRow(due(f"http://hooks.test:{receiver.port}/"))
    assert run_once(monkeypatch, fake) == 1
    assert fake.recorded == [
        {"id": "msg_" + "0" * 32, "ok": True, "status": 204, "error": None, "next_at": None}
    ]


def test_a_failed_attempt_is_retried_later_until_a_day_has_passed(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    receiver.statuses = [503, 503]
    url = f"http://hooks.test:{receiver.port}/"
    fake = OneRow(due(url, attempts=2))
    before = datetime.now(UTC)
    run_once(monkeypatch, fake)
    [retry] = fake.recorded
    assert (retry["ok"], retry["status"]) == (False, 503)
    wait = (retry["next_at"] - before).total_seconds()
    assert 120 <= wait < 125, "the third failure waits 30 s * 2**2"

    old = OneRow(due(url, attempts=20, created_at=datetime.now(UTC) - timedelta(hours=23.5)))
    run_once(monkeypatch, old)
    assert old.recorded[0]["next_at"] is None, "the next try would be past the day: failed"


def test_a_rerun_transaction_records_the_post_already_made(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    fake = OneRow(due(f"http://hooks.test:{receiver.port}/"), runs=2)
    run_once(monkeypatch, fake)
    assert len(receiver.requests) == 1
    assert [r["ok"] for r in fake.recorded] == [True, True]
