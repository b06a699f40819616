"""A webhook receiver for tests: a real HTTP server on this machine that keeps what it is sent
and verifies each body's Standard Webhooks signature."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


class Receiver:
    """An HTTP server that keeps every request it is sent, on a port fixed before it starts (so
    that it can be registered, then be down, then come up)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: list[tuple[dict[str, str], str]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/vtx"

    def start(self) -> None:
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self, secret: str) -> list[dict[str, Any]]:
        """The bodies received, each verified against its signature (raises if one fails)."""
        hook = Webhook(secret)
        return [hook.verify(body, headers) for headers, body in list(self.got)]

    def of(self, secret: str, event_type: str, video_id: str) -> dict[str, Any] | None:
        for event in self.events(secret):
            if event["type"] == event_type and event["data"]["video_id"] == video_id:
                return event
        return None
