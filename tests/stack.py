"""Helpers for tests that use the local stack: its environment and the cluster, by kubectl."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("VTX_STATE", REPO / ".stack"))
JOB_IMAGE = f"localhost/vtx-job:{os.environ.get('VTX_IMAGE_TAG', '0.1.0')}"


def stack_env() -> dict[str, str]:
    """The variables of `make env`, parsed from the stack's env file."""
    env_file = STATE / "env"
    if not env_file.exists():
        raise RuntimeError(f"{env_file} is missing: the local stack is not up (run `make up`)")
    env: dict[str, str] = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    env["PATH"] = env["PATH"].replace("${PATH}", os.environ.get("PATH", ""))
    return env


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    env = {**os.environ, **stack_env()}
    proc = subprocess.run(
        ["kubectl", *args], input=input, capture_output=True, text=True, env=env, timeout=120
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def apply(*objects: Mapping[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def get(kind: str, name: str, namespace: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kubectl("get", kind, name, "-n", namespace, "-o", "json"))
    return out


@contextmanager
def namespace(prefix: str) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        # The test's operator is gone by now: without it the resources' finalizers would hold
        # the namespace in Terminating forever (and keep the control plane busy retrying).
        for resource in kubectl("get", "videotranscodes", "-n", name, "-o", "name",
                                check=False).split():  # fmt: skip
            kubectl("patch", resource, "-n", name, "--type=merge", "-p",
                    '{"metadata": {"finalizers": null}}', check=False)  # fmt: skip
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def wait_for_job(namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """Wait until the Job completes or fails; raise with its pods' state after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        job = get("job", name, namespace)
        conditions = {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}
        if conditions.get("Complete") == "True" or conditions.get("Failed") == "True":
            return job
        if time.monotonic() > deadline:
            pods = kubectl("get", "pods", "-n", namespace, "-l", f"job-name={name}", "-o", "wide")
            events = kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp")
            raise TimeoutError(
                f"Job {namespace}/{name} neither completed nor failed within {timeout:.0f}s\n"
                f"{pods}\n{events[-3000:]}"
            )
        time.sleep(1)


def job_logs(namespace: str, name: str) -> str:
    return kubectl("logs", "-n", namespace, f"job/{name}", "--tail=-1")


def stop_part(
    name: str, timeout: float = 30, *, group: bool = True, sig: int | None = None
) -> None:
    """Stop one server of the stack (as an outage would), waiting until its process is gone:
    with its process group, or (``group=False``) the server alone, as a service manager
    restarting containerd leaves its shims and their containers running. ``SIGKILL`` for a
    crash (kube-apiserver drains its watches for up to a minute on SIGTERM).

    PostgreSQL gets SIGINT, its fast shutdown, as `make down` and ``pg_ctl stop`` do: on
    SIGTERM it would wait for its clients, and its ``runuser`` parent kills it after 2 s,
    leaving the backends (each in its own session) to serve pooled connections for a moment.
    Its stop ends when the postmaster has removed ``postmaster.pid``, after its last backend."""
    if sig is None:
        sig = signal.SIGINT if name == "postgres" else signal.SIGTERM
    pid = int((STATE / "pids" / f"{name}.pid").read_text())
    if group:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    lock = STATE / "postgres" / "data" / "postmaster.pid"
    while process_exists(pid) or (name == "postgres" and lock.exists()):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{name} (pid {pid}) still running {timeout:.0f}s after signal {sig}"
            )
        time.sleep(0.1)


def restart_missing_parts() -> None:
    """`make up`: starts the parts that are not running and waits for them."""
    proc = subprocess.run(
        ["make", "-s", "up"], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        said = [line for line in proc.stderr.splitlines() if "[vtx]" in line]
        raise RuntimeError(f"make up failed: {said}\n{proc.stderr[-3000:]}")


def process_exists(pid: int) -> bool:
    """True while the process runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pod_settings_env() -> dict[str, str]:
    """vtx settings as a pod sees them: the servers by their vtx-deps Service names."""
    env = stack_env()
    host = "vtx-deps.svc.cluster.local"
    return {
        "VTX_DATABASE_URL": env["VTX_DATABASE_URL"].replace("@127.0.0.1:", f"@postgres.{host}:"),
        "VTX_S3_ENDPOINT": f"http://s3.{host}:7070",
        "VTX_S3_PUBLIC_ENDPOINT": env["VTX_S3_PUBLIC_ENDPOINT"],
        "VTX_S3_ACCESS_KEY": env["VTX_S3_ACCESS_KEY"],
        "VTX_S3_SECRET_KEY": env["VTX_S3_SECRET_KEY"],
        "VTX_S3_BUCKET": env["VTX_S3_BUCKET"],
        "VTX_PULSAR_URL": f"pulsar://pulsar.{host}:6650",
        "VTX_IPFS_API_URL": f"http://ipfs.{host}:5001",
        "VTX_IPFS_API_TOKEN": env["VTX_IPFS_JOB_TOKEN"],
    }


def wait_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``check`` until it returns something other than None/False; name ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def install_crd() -> None:
    # The checkout's CRDs win over what a chart test (helm, kubectl replace) left in the cluster.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/videotranscodes.vtx.dev",
        "crd/kopfpeerings.kopf.dev", "crd/clusterkopfpeerings.kopf.dev",
    )  # fmt: skip


@contextmanager
def job_namespace(prefix: str) -> Iterator[str]:
    """A namespace set up as vtx runs jobs in it: the CRD, the jobrunner's Secret (settings as
    pods see them) and its ServiceAccount, which has no rights and mounts no token."""
    install_crd()
    with namespace(prefix) as ns:
        meta = {"name": "vtx-jobrunner", "namespace": ns}
        apply(
            {"apiVersion": "v1", "kind": "Secret", "metadata": meta,
             "stringData": pod_settings_env()},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta,
             "automountServiceAccountToken": False},
            # Operator replicas in this namespace agree through it on which one acts.
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
             "metadata": {"name": "vtx", "namespace": ns}},
        )  # fmt: skip
        try:
            yield ns
        finally:
            drop_intake_subscription(ns)


def drop_intake_subscription(ns: str) -> None:
    """An operator's queue subscription outlives it (by design); a test's goes with its
    namespace, so that the broker does not keep the topic's backlog for it."""
    env = stack_env()
    topic = "persistent/public/default/video-transcode-queue"
    url = f"{env['VTX_PULSAR_ADMIN_URL']}/admin/v2/{topic}/subscription/vtx-operator-intake-{ns}"
    request = urllib.request.Request(f"{url}?force=true", method="DELETE")  # noqa: S310
    try:
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - the stack's admin URL
    except urllib.error.HTTPError as exc:
        if exc.code != 404:  # no operator ran in it
            raise
