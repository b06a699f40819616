"""Prometheus metrics of the API."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPLOADS = Counter("vtx_api_uploads_total", "Uploads announced, by kind", ["kind"])
COMPLETED = Counter("vtx_api_uploads_completed_total", "Uploads completed (transcode requested)")
REQUESTS = Counter(
    "vtx_api_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
LATENCY = Histogram(
    "vtx_api_request_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WS_CLIENTS = Gauge("vtx_api_websocket_clients", "WebSocket clients connected")
STATUS_EVENTS = Counter("vtx_api_status_events_total", "Status events read from the topic")
WS_DROPPED = Counter("vtx_api_websocket_dropped_total", "WebSocket clients dropped as too slow")
