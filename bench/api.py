"""Benchmark: `vtx api` as users run it (a host process on the local stack), against baselines
run in the same process.

1. POST /upload/video at a fixed rate (open loop: latency counts from each request's scheduled
   time, so a stall is not hidden), against GET /healthz at the same rate (the framework floor).
2. One status event fanned out to many WebSocket clients, through the real path (a producer on
   video-status-updates, the API's reader, the hub): time from send to receipt at each client,
   against the same with one client.

The load generator shares the machine's cores with the API. Usage:
    python -m bench.api [--rate 200] [--seconds 20] [--clients 1000] [--events 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
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


async def _clients(
    url: str, token: str, video_id: str, clients: int, count: int, conn: Connection
) -> None:
    """``clients`` WebSocket clients in this process; sends "ready", then the delays."""
    delays: list[float] = []
    connected = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def client() -> None:
            nonlocal connected
            async with http.ws_connect(url, protocols=("vtx.v1", f"bearer.{token}")) as ws:
                await ws.send_json({"type": "subscribe", "videos": [video_id]})
                assert (await ws.receive_json(timeout=60))["type"] == "snapshot"
                connected += 1
                if connected == clients:
                    conn.send("ready")
                seen = 0
                while seen < count:
                    frame = await ws.receive(timeout=120)
                    arrived = time.time()  # before parsing: the client's own work is not counted
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"the socket ended: {frame.type!r}, {ws.close_code}")
                    msg = json.loads(frame.data)
                    if msg.get("type") == "status" and msg.get("video_id") == video_id:
                        delays.append(arrived - float(msg["message"]))
                        seen += 1

        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), 300)
    conn.send(delays)


def _client_process(
    url: str, token: str, video_id: str, clients: int, count: int, conn: Connection
) -> None:
    asyncio.run(_clients(url, token, video_id, clients, count, conn))


async def fan_out(
    api_url: str, token: str, settings: Settings, clients: int, count: int, processes: int
) -> list[float]:
    """Seconds from a producer's send to each client's receipt, for ``count`` events of one
    video the token owns (announced through the API: a client may follow only a video it may
    see). The clients are spread over ``processes`` so that one client loop reading a thousand
    sockets in turn does not add its own queue to the figure."""
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
        proc = ctx.Process(target=_client_process, args=(url, token, video_id, n, count, theirs))
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
