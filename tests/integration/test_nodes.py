"""A second node in the local cluster (dev/node2.sh): it registers with the API server, runs pods
from vtx's images, and its pods reach the servers and the first node's pods; a video's Jobs run
on both nodes, and when the second is lost (its kubelet, containerd and pods killed) the Jobs it
ran are run again on the first and the video ends Ready and whole; stopped, it leaves the
cluster."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from tests import media
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP
from tests.browser.test_dashboard import open_dashboard, play_past
from tests.integration.test_stack import job, roundtrip_from_a_pod
from tests.services import Process, api_process, free_port, operator_process, started
from tests.stack import (
    REPO,
    apply,
    job_logs,
    job_namespace,
    kubectl,
    namespace,
    wait_for_job,
    wait_until,
)
from tests.uploads import token, upload, wait_finished
from tests.verify import assert_complete
from vtx.core.media import segment_start
from vtx.core.objects import ObjectStore
from vtx.operator.jobs import LABEL_KIND, LABEL_VIDEO

pytestmark = pytest.mark.stack

FIRST, SECOND = "vtx-node", "vtx-node-2"


def node2(action: str) -> None:
    proc = subprocess.run(
        ["dev/node2.sh", action], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"dev/node2.sh {action} failed:\n{proc.stderr[-3000:]}"


def ready_nodes() -> set[str]:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    return {
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }


@pytest.fixture(scope="module")
def second_node() -> Iterator[str]:
    """The second node, started here unless the stack runs two (make up NODES=2); stopped at
    the end (it leaves the cluster), then started again if the stack had it."""
    had = SECOND in ready_nodes()
    if not had:
        node2("start")
    try:
        yield SECOND
    finally:
        node2("stop")
        names = kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split()
        assert names == [FIRST], f"the cluster's nodes after the second stopped: {names}"
        if had:
            node2("start")


def pod_of(ns: str, job_name: str) -> dict[str, Any]:
    pods = json.loads(kubectl("get", "pods", "-n", ns, "-l", f"job-name={job_name}", "-o", "json"))
    assert len(pods["items"]) == 1, pods["items"]
    pod: dict[str, Any] = pods["items"][0]
    return pod


def ready_ip(ns: str, job_name: str) -> str | None:
    """The pod IP of the Job's pod once its container is ready."""
    pod = pod_of(ns, job_name)
    if any(c.get("ready") for c in pod["status"].get("containerStatuses", [])):
        return str(pod["status"]["podIP"])
    return None


def test_a_second_node_joins_and_its_pods_reach_the_servers(second_node: str) -> None:
    assert ready_nodes() == {FIRST, second_node}
    roundtrip_from_a_pod(second_node)


def test_pods_on_the_two_nodes_reach_each_other(second_node: str) -> None:
    """A server pod on each node; a client Job on the other fetches a page from it by pod IP."""
    with namespace("vtx-test-nodes") as ns:
        for node in (FIRST, second_node):
            serve = job(f"serve-{node}", ns, ["python", "-m", "http.server", "8000", "-d", "/etc"])
            spec = serve["spec"]["template"]["spec"]
            spec["nodeSelector"] = {"kubernetes.io/hostname": node}
            spec["containers"][0]["ports"] = [{"containerPort": 8000}]
            spec["containers"][0]["readinessProbe"] = {
                "tcpSocket": {"port": 8000}, "periodSeconds": 1
            }  # fmt: skip
            apply(serve)
        ips = {
            node: wait_until(
                f"the server pod on {node} to be ready",
                lambda node=node: ready_ip(ns, f"serve-{node}"),  # type: ignore[misc]
                timeout=120,
            )
            for node in (FIRST, second_node)
        }
        assert ips[FIRST].startswith("10.244.0."), ips
        assert ips[second_node].startswith("10.244.1."), ips
        for client, server in ((FIRST, second_node), (second_node, FIRST)):
            name = f"fetch-from-{server}"
            fetch = (
                "import urllib.request; "
                f"print('status', urllib.request.urlopen('http://{ips[server]}:8000/hostname', "
                "timeout=10).status)"
            )
            manifest = job(name, ns, ["python", "-c", fetch])
            manifest["spec"]["template"]["spec"]["nodeSelector"] = {
                "kubernetes.io/hostname": client
            }
            apply(manifest)
            status = wait_for_job(ns, name, timeout=120)
            logs = job_logs(ns, name)
            assert status["status"].get("succeeded") == 1, logs
            assert "status 200" in logs, logs
            assert pod_of(ns, name)["spec"]["nodeName"] == client


@contextlib.contextmanager
def serving(
    prefix: str, tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[str, Process, Process]]:
    """A namespace of its own, an API and an operator (with ``env``) for it, for the block."""
    with job_namespace(prefix) as ns:
        op = operator_process(
            tmp_path / "operator.log", ns, health_port=free_port(), metrics_port=free_port(),
            env=env,
        )  # fmt: skip
        # The API first: it migrates the schema the operator's outbox relay reads.
        with started(api_process(tmp_path / "api.log", ns)) as api, started(op):
            yield ns, api, op


def video_pods(ns: str, video_id: str) -> list[dict[str, Any]]:
    selector = f"{LABEL_VIDEO}={video_id},{LABEL_KIND}=transcode"
    got = json.loads(kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))
    pods: list[dict[str, Any]] = got["items"]
    return pods


def exit_code(pod: dict[str, Any]) -> int | None:
    """How the pod's jobrunner container ended (None while it runs)."""
    for c in pod["status"].get("containerStatuses", []):
        ended = (c.get("state") or {}).get("terminated")
        if c["name"] == "jobrunner" and ended:
            return int(ended["exitCode"])
    return None


def running_on(pods: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    """The pods on ``node`` whose jobrunner container has started."""
    return [
        p
        for p in pods
        if p["spec"].get("nodeName") == node
        and any(
            "running" in (c.get("state") or {}) for c in p["status"].get("containerStatuses", [])
        )
    ]


def test_a_long_video_is_split_in_ranges_encoded_on_both_nodes_and_put_together(
    second_node: str, tmp_path: Path, store: ObjectStore
) -> None:
    """A 60 s upload, longer than the split setting (30 s here): its sound is encoded once, its
    picture in ranges by one Indexed Job whose pods run on both nodes, then put together. The
    video is Ready and whole (`vtx verify`), plays in Chromium over every join from S3 and
    IPFS, and its HLS holds every frame once, at its time, with no gap or overlap where ranges
    meet."""
    seconds, fps = 60, 30
    source = media.make_clip(tmp_path / "long.mp4", seconds=seconds, width=854, height=480,
                             fps=fps, tone=587)  # fmt: skip
    env = {"VTX_MAX_RUNNING_JOBS": "4", "VTX_SPLIT_SECONDS": "30", "VTX_MIN_RANGE_SECONDS": "10"}
    with serving("vtx-test-split", tmp_path, env) as (ns, api, op):
        vid = upload(api, token(), source)
        got = wait_finished(api, [vid], timeout=400, operator=op)
        assert got[vid]["phase"] == "Ready", got[vid]
        resource = json.loads(kubectl("get", "videotranscode", f"v-{vid}", "-n", ns,
                                      "-o", "json"))  # fmt: skip
        grouping = resource["status"]["grouping"]
        assert grouping["reason"] == "Split", grouping
        bounds = grouping["rangeBounds"]
        assert len(bounds) >= 3, grouping
        selector = f"{LABEL_VIDEO}={vid},{LABEL_KIND}=ranges"
        pods = json.loads(kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))
        nodes = {p["spec"].get("nodeName") for p in pods["items"]}
        assert nodes == {FIRST, second_node}, f"the ranges ran on {nodes}"
        plan = [r["name"] for r in resource["status"]["plan"]]
        assert plan == ["480p", "audio-1"], plan
        played = play_across(api, vid, [segment_start(b) for b in bounds[1:-1]])
        assert played == ["s3", "ipfs"], played

    prefix = f"videos/{vid}/480p/hls"
    playlist, local = media.local_hls(store, prefix, tmp_path / "480p")
    assert [s.sequence for s in playlist.segments] == list(range(bounds[-1]))
    frames = media.packets(local, "v")
    assert len(frames) == seconds * fps, "every frame once"
    steps = media.steps((f[0] for f in frames), 4)
    assert steps == {round(1 / fps, 4)}, f"no gap or overlap where ranges meet: {steps}"
    assert list(store.iter_sizes(f"{prefix}/init_")) == [], "the later ranges' inits are gone"
    assert list(store.iter_sizes(f"videos/{vid}/480p/ranges/")) == [], "the tiles are gone"
    assert_complete(vid)


def play_across(api: Process, vid: str, joins: list[float]) -> list[str]:
    """Play the video in Chromium with the dashboard's player (hls.js) over each place where
    two ranges meet, from storage and then from the IPFS gateway; returns the sources played
    from. Playback that stalls at a join, or any media or hls.js error, fails."""
    sources = []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_context(viewport=DESKTOP, base_url=api.url).new_page()
            uncaught: list[str] = []
            page.on("pageerror", lambda exc: uncaught.append(f"{exc.name}: {exc.message}"))
            open_dashboard(page, token())
            page.locator(f"#video-{vid}").get_by_role("button", name="Play").click()
            for source in ("s3", "ipfs"):
                if source == "ipfs":
                    page.get_by_label("IPFS gateway").check()
                expect(page.locator("#player")).to_have_attribute("data-source", source)
                expect(page.locator("#player")).to_have_attribute("data-engine", "hls.js")
                for join in joins:
                    page.evaluate("at => { document.getElementById('video').currentTime = at; }",
                                  join - 1.5)  # fmt: skip
                    played = play_past(page, join + 1.5, timeout_s=30)
                    assert played["source"] == source, played
                sources.append(source)
            assert not uncaught, uncaught
        finally:
            chromium.close()
    return sources


# Last: it kills the second node (the module's fixture then sweeps what is left of it).
def test_a_videos_jobs_run_on_both_nodes_and_survive_the_loss_of_one(
    second_node: str, tmp_path: Path
) -> None:
    """A 720p upload gets a Job per rendition (480p, 720p), one on each node. The second node is
    killed while its Job encodes: after its taint's grace (VTX_NODE_LOST_SECONDS, 10 s here) the
    pod is evicted, the operator ends it once its deletion deadline has passed (lost.py), and
    its Job runs the rendition again on the first node; the video ends Ready and whole."""
    source = media.make_clip(tmp_path / "lost.mp4", seconds=30, width=1280, height=720, tone=523)
    env = {"VTX_MAX_RUNNING_JOBS": "4", "VTX_NODE_LOST_SECONDS": "10"}
    with serving("vtx-test-node-loss", tmp_path, env) as (ns, api, op):
        vid = upload(api, token(), source)

        def on_both() -> list[dict[str, Any]] | None:
            pods = video_pods(ns, vid)
            nodes = {p["spec"].get("nodeName") for p in pods}
            return pods if running_on(pods, second_node) and nodes == {FIRST, second_node} else None

        pods = wait_until(
            "the video's transcode pods to be scheduled on both nodes and to run on the second",
            on_both, timeout=120,
        )  # fmt: skip
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        lost = {p["metadata"]["name"]: p["metadata"]["labels"]["job-name"]
                for p in running_on(pods, second_node)}  # fmt: skip
        node2("kill")

        got = wait_finished(api, [vid], timeout=300, operator=op)
        assert got[vid]["phase"] == "Ready", got[vid]
        after = video_pods(ns, vid)
        names = {p["metadata"]["name"] for p in after}
        assert not names & lost.keys(), f"the lost pods are still there: {names & lost.keys()}"
        for job_name in lost.values():
            again = [p for p in after if p["metadata"]["labels"]["job-name"] == job_name]
            assert again, f"no pod of Job {job_name} after the loss"
            assert {p["spec"]["nodeName"] for p in again} == {FIRST}, again
            # Its jobrunner ended with 0 (the pod's phase follows a moment later).
            assert {exit_code(p) for p in again} == {0}, again
        log = op.tail(200_000)
        for pod in lost:
            assert f"pod {ns}/{pod} was still running on node {second_node}" in log, log[-3000:]
        assert_complete(vid)
