"""Benchmark: `vtx api` as users run it (a host process on the local stack), against baselines
run in the same process.

1. POST /upload/video at a fixed rate (open loop: latency counts from each request's scheduled
   time, so a stall is not hidden), against GET /healthz at the same rate (the framework floor).
2. One status event fanned out to many WebSocket clients, through the real path (a producer on
   video-status-updates, the API's reader, the hub): time from send to receipt at each client,
   against the same with one client.

Every thread of the API is held to core 0 (sched_setaffinity), and the WebSocket clients to
core 1: the clients' CPU is kept off the API's core, though the servers, the cluster and the
HTTP load generator still run on either. A WebSocket client here is a plain socket, opened with
the RFC 6455 handshake and read in an epoll loop with the others of its process, so that the
clients' own work (and their queue behind one another) weighs little in the figure. Usage:
    python -m bench.api [--rate 200] [--seconds 20] [--clients 1000] [--events 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing
import os
import selectors
import socket
import statistics
import struct
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import requests

from tests.services import api_process
from tests.stack import job_namespace, stack_env
from vtx.core import bus, events
from vtx.core.settings import Settings

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
API_CPU, CLIENT_CPU = 0, 1  # the cores the API and the WebSocket clients are held to


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": q[49], "p90": q[89], "p99": q[98], "max": ordered[-1]}


def show(label: str, stats: dict[str, float], base: dict[str, float] | None = None) -> None:
    ratio = f"{stats['p99'] / base['p99']:8.2f}x" if base else "    1.00"
    print(
        f"   {label:<44}" + "".join(f"{stats[k] * 1000:8.1f}" for k in ("p50", "p90", "p99", "max"))
        + ratio
    )  # fmt: skip


async def load(
    url: str, method: str, rate: float, seconds: float, body: object | None, token: str
) -> tuple[list[float], int]:
    """Requests at ``rate`` per second for ``seconds``; latencies and the count of failures."""
    latencies: list[float] = []
    failures = 0
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(scheduled: float) -> None:
            nonlocal failures
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            async with http.request(method, url, json=body, headers=headers) as resp:
                await resp.read()
                if resp.status >= 300:
                    failures += 1
            latencies.append(time.perf_counter() - scheduled)

        start = time.perf_counter() + 0.5
        count = int(rate * seconds)
        await asyncio.gather(*(one(start + i / rate) for i in range(count)))
    return latencies, failures


def _handshake(host: str, port: int, token: str) -> socket.socket:
    """A WebSocket opened by hand (RFC 6455, section 4.1) on a plain socket."""
    sock = socket.create_connection((host, port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: vtx.v1, bearer.{token}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the API closed the socket during the handshake")
        head += chunk
    status, _, rest = head.partition(b"\r\n\r\n")
    accept = base64.b64encode(
        hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
    ).decode()
    if not status.startswith(b"HTTP/1.1 101") or accept.encode() not in status:
        raise ConnectionError(f"no WebSocket upgrade: {status[:200]!r}")
    if rest:
        raise ConnectionError("the API sent frames before the client subscribed")
    return sock


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked frame, as a client sends it (payloads under 126 bytes)."""
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def server_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """The whole (unmasked, unfragmented) frames at the start of ``buf``, removed from it."""
    out: list[tuple[int, bytes]] = []
    while len(buf) >= 2:
        opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, at = struct.unpack_from("!H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, at = struct.unpack_from("!Q", buf, 2)[0], 10
        if len(buf) < at + n:
            break
        out.append((opcode, bytes(buf[at : at + n])))
        del buf[: at + n]
    return out


def _clients(
    url: str, token: str, video_id: str, clients: int, count: int, conn: Connection, cpu: int
) -> None:
    """``clients`` WebSocket clients in this process, on core ``cpu``; sends "ready" once each
    has its snapshot, then the delays.

    The clients are plain sockets read in one epoll loop: the time of arrival is taken as
    ``recv`` returns, before any parsing, and a client costs little CPU, so the figure is the
    API's delivery more than the clients' own queue."""
    os.sched_setaffinity(0, {cpu})
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    subscribe = client_frame(0x1, json.dumps({"type": "subscribe", "videos": [video_id]}).encode())
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, tuple[bytearray, list[int]]] = {}
    for _ in range(clients):
        sock = _handshake(host, int(port), token)
        sock.sendall(subscribe)
        sock.setblocking(False)
        state[sock] = (bytearray(), [-1])  # unread bytes; status events seen (-1: no snapshot)
        sel.register(sock, selectors.EVENT_READ, sock)
    delays: list[float] = []
    waiting, unsnapped = clients, clients
    deadline = time.monotonic() + 300
    while waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{waiting} WebSocket clients did not get {count} events in 300 s")
        for key, _ in sel.select(timeout=1):
            sock = key.data
            data = sock.recv(65536)
            arrived = time.time()
            if not data:
                raise ConnectionError("the API closed a WebSocket")
            buf, seen = state[sock]
            buf += data
            for opcode, payload in server_frames(buf):
                if opcode == 0x9:  # ping: the API's heartbeat
                    sock.sendall(client_frame(0xA, payload))
                    continue
                if opcode == 0x8:
                    raise ConnectionError(f"the API closed a WebSocket: {payload!r}")
                msg = json.loads(payload)
                if msg.get("type") == "snapshot" and seen[0] < 0:
                    seen[0] = 0
                    unsnapped -= 1
                    if not unsnapped:
                        conn.send("ready")
                elif msg.get("type") == "status" and msg.get("video_id") == video_id:
                    delays.append(arrived - float(msg["message"]))
                    seen[0] += 1
                    if seen[0] == count:
                        waiting -= 1
    for sock in state:
        sock.close()
    conn.send(delays)


async def fan_out(
    api_url: str, token: str, settings: Settings, clients: int, count: int, processes: int
) -> list[float]:
    """Seconds from a producer's send to each client's receipt, for ``count`` events of one
    video the token owns (announced through the API: a client may follow only a video it may
    see). The clients are spread over ``processes``, all held to the core the API is not."""
    url = api_url.replace("http://", "ws://") + "/ws"
    announced = await asyncio.to_thread(
        requests.post, f"{api_url}/v1/videos", headers={"Authorization": f"Bearer {token}"},
        timeout=30, json={"file_name": "fan-out.mp4", "size": 1000, "content_type": "video/mp4"},
    )  # fmt: skip
    announced.raise_for_status()
    video_id = str(announced.json()["id"])
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for i in range(processes):
        n = clients // processes + (1 if i < clients % processes else 0)
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(
            target=_clients, args=(url, token, video_id, n, count, theirs, CLIENT_CPU)
        )
        proc.start()
        pipes.append(ours)
        procs.append(proc)
    loop = asyncio.get_running_loop()
    for pipe in pipes:
        if not await loop.run_in_executor(None, pipe.poll, 120):
            raise TimeoutError("WebSocket clients did not connect within 120 s")
        assert pipe.recv() == "ready"
    pulsar = bus.pulsar_client(settings)
    producer = pulsar.create_producer(bus.topic(settings, events.STATUS_UPDATES))
    try:
        for _ in range(count):
            event = events.StatusUpdate(video_id=video_id, phase="encoding", progress=1.0,
                                        message=f"{time.time():.6f}")  # fmt: skip
            producer.send(events.encode(event))
            await asyncio.sleep(0.5)
    finally:
        producer.close()
        pulsar.close()
    delays: list[float] = []
    for pipe, proc in zip(pipes, procs, strict=True):
        if not await loop.run_in_executor(None, pipe.poll, 180):
            raise TimeoutError("WebSocket clients did not get every event within 180 s")
        delays += pipe.recv()
        proc.join(30)
    return delays


async def run(args: argparse.Namespace) -> None:
    env = stack_env()
    token = env["VTX_API_TOKEN"]
    settings = Settings.from_env(env)
    with (
        tempfile.TemporaryDirectory(prefix="vtx-bench-api-") as tmp,
        job_namespace("vtx-bench-api") as ns,
    ):
        api = api_process(Path(tmp) / "api.log", ns)
        api.start()
        assert api.proc is not None
        for task in os.listdir(f"/proc/{api.proc.pid}/task"):  # every thread of the API
            os.sched_setaffinity(int(task), {API_CPU})
        try:
            body = {"filename": "bench.mp4", "fileSize": 1_000_000}
            await load(f"{api.url}/healthz", "GET", args.rate, 2, None, token)  # warm-up
            health, _ = await load(
                f"{api.url}/healthz", "GET", args.rate, args.seconds, None, token
            )
            uploads, failed = await load(
                f"{api.url}/upload/video", "POST", args.rate, args.seconds, body, token
            )
            print(f"1. {args.rate:g} requests/s for {args.seconds:g} s (ms)"
                  f"{'':>10}p50     p90     p99     max   p99/base")  # fmt: skip
            base = percentiles(health)
            show("GET /healthz (baseline)", base)
            show(f"POST /upload/video ({failed} failed)", percentiles(uploads), base)
            print("   target: POST /upload/video p99 < 50 ms")
            one = percentiles(await fan_out(api.url, token, settings, 1, args.events, 1))
            many = percentiles(
                await fan_out(api.url, token, settings, args.clients, args.events, args.processes)
            )
            print(f"2. one status event to WebSocket clients, {args.events} events (ms)")
            show("1 client (baseline)", one)
            show(f"{args.clients} clients ({args.processes} client processes)", many, one)
            print(f"   target: {args.clients} clients p99 < 100 ms")
            print(f"   API peak RSS {api.peak_rss_bytes() / 2**20:.0f} MB")
        finally:
            api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--processes", type=int, default=4, help="processes holding the clients")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
