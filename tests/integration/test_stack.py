"""The local stack: a real cluster runs the job image, and every server answers, from the host
and from a pod, by the names pods use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.stack import (
    JOB_IMAGE,
    REPO,
    apply,
    job_logs,
    kubectl,
    namespace,
    stack_env,
    wait_for_job,
)

pytestmark = pytest.mark.stack

RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def job(name: str, ns: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 180,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "main",
                            "image": JOB_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": command,
                            "securityContext": RESTRICTED,
                            "resources": {"limits": {"memory": "512Mi", "cpu": "1"}},
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                            **container,
                        }
                    ],
                    "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "512Mi"}}],
                }
            },
        },
    }


def test_job_runs_ffmpeg_as_non_root_with_read_only_root_and_cluster_dns() -> None:
    script = """
set -u
echo "uid=$(id -u)"
if touch /probe 2>/dev/null; then echo "rootfs=writable"; else echo "rootfs=read-only"; fi
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=640x360:rate=25 -t 2 \
  -c:v libx264 -pix_fmt yuv420p /scratch/out.mp4 && echo "ffmpeg=ok"
ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height \
  -of csv=p=0 /scratch/out.mp4 | sed 's/^/probe=/'
getent hosts kubernetes.default | awk '{print "dns_kubernetes=" $1}'
getent hosts postgres.vtx-deps | awk '{print "dns_postgres=" $1}'
"""
    with namespace("vtx-test-job") as ns:
        apply(job("ffmpeg", ns, ["sh", "-c", script]))
        status = wait_for_job(ns, "ffmpeg", timeout=180)
        logs = job_logs(ns, "ffmpeg")
        assert status["status"].get("succeeded") == 1, logs
        facts = dict(line.split("=", 1) for line in logs.splitlines() if "=" in line)
        assert facts["uid"] == "10001"
        assert facts["rootfs"] == "read-only"
        assert facts["ffmpeg"] == "ok"
        assert facts["probe"] == "h264,640,360"
        assert facts["dns_kubernetes"] == "10.96.0.1"
        postgres_ip = kubectl(
            "get", "svc", "postgres", "-n", "vtx-deps", "-o", "jsonpath={.spec.clusterIP}"
        )
        assert facts["dns_postgres"] == postgres_ip


def check_roundtrip(results: dict[str, Any]) -> None:
    assert results["s3"] == {"same_bytes": True, "size": 256 * 1024}
    assert results["pulsar"]["same_bytes"] is True, results["pulsar"]
    assert results["ipfs"]["same_bytes"] is True, results["ipfs"]
    assert results["ipfs"]["cid"].startswith("bafk"), "a raw-leaf CIDv1 in base32"
    assert results["postgres"] == {"isolation": "serializable", "second_commit": "40001"}


def parse_roundtrip(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("ROUNDTRIP ")]
    assert lines, f"the round-trip script printed no result:\n{output}"
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("ROUNDTRIP "))
    return result


def test_every_server_round_trips_from_the_host() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests/pod/roundtrip.py")],
        env={**os.environ, **stack_env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    check_roundtrip(parse_roundtrip(proc.stdout))


def test_every_server_round_trips_from_a_pod_by_service_name() -> None:
    roundtrip_from_a_pod()


def roundtrip_from_a_pod(node: str | None = None) -> None:
    """The round trip in a Job's pod, by the servers' in-cluster names (on ``node``)."""
    env = stack_env()
    host = "vtx-deps.svc.cluster.local"
    pod_env = {
        "VTX_DATABASE_URL": env["VTX_DATABASE_URL"].replace("@127.0.0.1:", f"@postgres.{host}:"),
        "VTX_S3_ENDPOINT": f"http://s3.{host}:7070",
        "VTX_S3_ACCESS_KEY": env["VTX_S3_ACCESS_KEY"],
        "VTX_S3_SECRET_KEY": env["VTX_S3_SECRET_KEY"],
        "VTX_S3_BUCKET": env["VTX_S3_BUCKET"],
        "VTX_PULSAR_URL": f"pulsar://pulsar.{host}:6650",
        "VTX_IPFS_API_URL": f"http://ipfs.{host}:5001",
        "VTX_IPFS_API_TOKEN": env["VTX_IPFS_API_TOKEN"],
    }
    script = (REPO / "tests/pod/roundtrip.py").read_text()
    with namespace("vtx-test-roundtrip") as ns:
        apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "stack", "namespace": ns},
                "stringData": pod_env,
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "roundtrip", "namespace": ns},
                "data": {"roundtrip.py": script},
            },
        )
        manifest = job(
            "roundtrip",
            ns,
            ["python", "/checks/roundtrip.py"],
            envFrom=[{"secretRef": {"name": "stack"}}],
        )
        pod_spec = manifest["spec"]["template"]["spec"]
        pod_spec["containers"][0]["volumeMounts"].append({"name": "checks", "mountPath": "/checks"})
        pod_spec["volumes"].append({"name": "checks", "configMap": {"name": "roundtrip"}})
        if node is not None:
            pod_spec["nodeSelector"] = {"kubernetes.io/hostname": node}
        apply(manifest)
        status = wait_for_job(ns, "roundtrip", timeout=180)
        logs = job_logs(ns, "roundtrip")
        assert status["status"].get("succeeded") == 1, logs
        check_roundtrip(parse_roundtrip(logs))
