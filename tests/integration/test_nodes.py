"""A second node in the local cluster (dev/node2.sh): it registers with the API server, runs pods
from vtx's images, and its pods reach the servers and the first node's pods; stopped, it leaves
the cluster."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_stack import job, roundtrip_from_a_pod
from tests.stack import REPO, apply, job_logs, kubectl, namespace, wait_for_job, wait_until

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
    node2("start")
    try:
        yield SECOND
    finally:
        node2("stop")
        names = kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split()
        assert names == [FIRST], f"the cluster's nodes after the second stopped: {names}"


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
