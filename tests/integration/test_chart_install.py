"""The chart as a platform team uses it: `helm install` into the local cluster with Secrets for
the local servers, `helm test`, an upload through the installed API to Ready, playback URLs that
play, `helm upgrade` rolling the pods, upgrading the CRD and keeping the resources, `helm
uninstall` keeping the CRD and the outputs."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests import media
from tests.stack import REPO, kubectl, namespace, stack_env, wait_until
from tests.verify import assert_complete
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings

pytestmark = pytest.mark.stack
CHART = REPO / "charts" / "vtx"
DEPS = "vtx-deps.svc.cluster.local"


def helm(*args: str) -> str:
    env = {**os.environ, **stack_env()}
    proc = subprocess.run(
        ["helm", *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert proc.returncode == 0, f"helm {' '.join(args[:3])} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout


def secrets(ns: str) -> None:
    """The Secrets the chart names, from the stack's credentials (as `make demo` makes them)."""
    env = stack_env()
    database = env["VTX_DATABASE_URL"].replace("@127.0.0.1:", f"@postgres.{DEPS}:")
    values = {
        "vtx-database": {"url": database},
        "vtx-storage": {"accessKey": env["VTX_S3_ACCESS_KEY"],
                        "secretKey": env["VTX_S3_SECRET_KEY"]},
        "vtx-pulsar": {"url": f"pulsar://pulsar.{DEPS}:6650"},
        "vtx-api": {"tokens": env["VTX_API_TOKENS"]},
        "vtx-ipfs": {"token": env["VTX_IPFS_API_TOKEN"]},
        "vtx-ipfs-job": {"token": env["VTX_IPFS_JOB_TOKEN"]},
        "vtx-api-test": {"token": env["VTX_API_TOKEN"]},
    }  # fmt: skip
    docs = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n, "namespace": ns},
         "stringData": data}
        for n, data in values.items()
    ]  # fmt: skip
    listing = {"apiVersion": "v1", "kind": "List", "items": docs}
    kubectl("apply", "-f", "-", input=json.dumps(listing))


@pytest.fixture(scope="module")
def release() -> Iterator[str]:
    with namespace("vtx-test-chart") as ns:
        secrets(ns)
        # ClusterIP: the host reaches Service addresses through kube-proxy like a pod does.
        # --take-ownership: the CRDs are in the cluster already (applied with kubectl by the
        # stack's tests, or another release's); the release takes them over.
        helm("install", "vtx", str(CHART), "-n", ns, "-f", str(CHART / "values-local.yaml"),
             "--set", "api.service.type=ClusterIP", "--set", "api.publicUrl=",
             "--take-ownership", "--wait", "--timeout", "5m")  # fmt: skip
        try:
            yield ns
        finally:
            restore_crd()
            subprocess.run(["helm", "uninstall", "vtx", "-n", ns, "--wait"],
                           env={**os.environ, **stack_env()}, capture_output=True, timeout=300,
                           check=False)  # fmt: skip
            # Without an operator the resources' finalizers would hold the namespace forever.
            for name in kubectl("get", "vt", "-n", ns, "-o", "name", check=False).split():
                kubectl("patch", name, "-n", ns, "--type=merge", "-p",
                        '{"metadata": {"finalizers": null}}', check=False)  # fmt: skip


CRD_NAME = "videotranscodes.vtx.dev"
CRD_FILE = "videotranscodes.vtx.dev.yaml"


def crd_spec_properties(crd: dict[str, Any]) -> dict[str, Any]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    properties: dict[str, Any] = schema["properties"]["spec"]["properties"]
    return properties


def chart_with_new_crd_field(root: Path) -> Path:
    """A copy of the chart whose VideoTranscode CRD has one more optional spec field, `note`,
    and the next chart version: the kind of change a release makes."""
    chart = root / "vtx"
    subprocess.run(["cp", "-r", str(CHART), str(chart)], check=True)
    path = chart / "files" / "crds" / CRD_FILE
    crd = yaml.safe_load(path.read_text())
    crd_spec_properties(crd)["note"] = {"type": "string", "maxLength": 200,
                                        "description": "A note for people (optional)."}  # fmt: skip
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    meta = chart / "Chart.yaml"
    meta.write_text(re.sub(r"(?m)^version: .*$", "version: 99.0.0", meta.read_text(), count=1))
    return chart


def restore_crd() -> None:
    """The cluster's CRD as crds/ has it again (server-side apply would keep a field it did not
    set, so the whole object is replaced)."""
    live = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json"))
    live["spec"] = yaml.safe_load((REPO / "crds" / CRD_FILE).read_text())["spec"]
    kubectl("replace", "-f", "-", input=json.dumps(live))


def dry_run_with_note(ns: str, resource: str) -> subprocess.CompletedProcess[str]:
    """The API server's answer to creating a copy of ``resource`` with `spec.note` set (a
    server-side dry run: validated and pruned by the cluster's schema, never stored)."""
    live = json.loads(kubectl("get", "vt", resource, "-n", ns, "-o", "json"))
    copy = {"apiVersion": live["apiVersion"], "kind": live["kind"],
            "metadata": {"name": f"{resource[:50]}-note", "namespace": ns},
            "spec": {**live["spec"], "note": "made before the upgrade"}}  # fmt: skip
    return subprocess.run(
        ["kubectl", "create", "--dry-run=server", "-o", "json", "-f", "-"],
        input=json.dumps(copy), capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **stack_env()},
    )  # fmt: skip


def api_url(ns: str) -> str:
    ip = kubectl("get", "svc", "vtx-api", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
    port = kubectl("get", "svc", "vtx-api", "-n", ns, "-o", "jsonpath={.spec.ports[0].port}")
    return f"http://{ip}:{port}"


def pod_uids(ns: str) -> set[str]:
    # The API's and the operator's (the last `helm test` pod stays until the next test run).
    out = kubectl("get", "pods", "-n", ns, "-l",
                  "app.kubernetes.io/instance=vtx,app.kubernetes.io/component in (api,operator)",
                  "-o", "jsonpath={.items[*].metadata.uid}")  # fmt: skip
    return set(out.split())


def upload_and_wait(api: str, clip: Path) -> dict[str, Any]:
    token = stack_env()["VTX_API_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"file_name": clip.name, "size": clip.stat().st_size, "content_type": "video/mp4"}
    created = requests.post(f"{api}/v1/videos", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    upload = created.json()["upload"]
    with clip.open("rb") as f:
        assert requests.put(upload["url"], data=f, headers=upload["headers"], timeout=120).ok
    video_id = created.json()["id"]
    done = requests.post(f"{api}/v1/videos/{video_id}/complete", json={}, headers=headers,
                         timeout=30)  # fmt: skip
    assert done.status_code == 202, done.text

    def finished() -> dict[str, Any] | None:
        view: dict[str, Any] = requests.get(
            f"{api}/v1/videos/{video_id}", headers=headers, timeout=10
        ).json()
        return view if view["phase"] in ("Ready", "Failed") else None

    return wait_until(f"video {video_id} to be Ready", finished, timeout=600, every=2)


def prometheus(path: str, **params: str) -> Any:
    """GET the stack's Prometheus HTTP API; its `data` (a failed query fails the test)."""
    url = stack_env()["VTX_PROMETHEUS_URL"]
    resp = requests.get(f"{url}{path}", params=params, timeout=30)
    body = resp.json()
    assert resp.status_code == 200, f"{path} {params}: {resp.status_code} {body}"
    assert body["status"] == "success", body
    return body["data"]


def instant(query: str) -> list[dict[str, Any]]:
    data = prometheus("/api/v1/query", query=query)
    result: list[dict[str, Any]] = data["result"]
    return result


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every target of the chart's Grafana dashboard, with Grafana's
    $__rate_interval as a Prometheus duration (four scrape intervals at least: 1m here)."""
    board = json.loads((CHART / "dashboards" / "vtx.json").read_text())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel["title"], target["expr"].replace("$__rate_interval", "1m")))
            walk(panel.get("panels", []))

    walk(board["panels"])
    return found


def test_helm_test_then_dashboard_and_alert_queries_return_data(release: str) -> None:
    """`helm test` passes (a clip uploaded through the installed API to Ready). Then the stack's
    Prometheus (scraping the release as the chart's ServiceMonitors do, with the chart's alerting
    rules loaded) answers every dashboard query and every signal an alert compares with data."""
    ns = release
    # The release's pods are scraped before the transcode: a histogram whose first scraped
    # sample already counts the transcode shows no increase (Prometheus sees no rate).
    for component in ("api", "operator"):
        up = f'up{{namespace="{ns}",component="{component}"}} == 1'
        wait_until(f"Prometheus to scrape the {component} of the release in {ns}",
                   functools.partial(instant, up), timeout=90, every=2)  # fmt: skip
    ready_count = f'vtx_time_to_ready_seconds_count{{namespace="{ns}"}}'
    wait_until("the operator's time-to-Ready histogram at 0 in Prometheus",
               functools.partial(instant, f"{ready_count} == 0"), timeout=60, every=2)  # fmt: skip

    out = helm("test", "vtx", "-n", ns, "--timeout", "12m", "--logs")
    assert "Phase:          Succeeded" in out, out
    assert "vtx smoke: passed" in out, out
    assert "is Ready after" in out, out

    wait_until(
        "the helm test's transcode in the scraped time-to-Ready histogram",
        functools.partial(instant, f"{ready_count} > 0"),
        timeout=60, every=2,
    )  # fmt: skip
    empty = [(title, expr) for title, expr in dashboard_queries() if not instant(expr)]
    assert not empty, f"dashboard queries without data: {empty}"
    for quantile in ("vtx_time_to_ready_seconds", "vtx_encode_speed"):
        expr = f"histogram_quantile(0.5, sum by (le) (rate({quantile}_bucket[1h])))"

        def finite(q: str = expr) -> float | None:
            value = float(instant(q)[0]["value"][1])
            return value if math.isfinite(value) else None

        # Once seen NaN right after the sample that counts the transcode, while the same query
        # at every later instant gives a number: wait for it, with a deadline.
        value = wait_until(f"a finite median from {expr}", finite, timeout=30, every=2)
        assert value > 0, (expr, value)

    rules_file = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    written = {r.get("record") or r["alert"] for g in rules_file["groups"] for r in g["rules"]}

    def evaluated_rules() -> list[dict[str, Any]] | None:
        rules = [r for g in prometheus("/api/v1/rules")["groups"] for r in g["rules"]]
        # A rule not evaluated yet has Go's zero time.
        done = rules and all(not r["lastEvaluation"].startswith("0001") for r in rules)
        return rules if done else None

    loaded = wait_until("Prometheus to evaluate the rules", evaluated_rules, timeout=60, every=1)
    assert {r["name"] for r in loaded} == written, "Prometheus has not loaded the chart's rules"
    broken = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert not broken, f"rules that fail to evaluate: {broken}"
    records = {r["name"]: r["query"] for r in loaded if r["type"] == "recording"}
    silent = [name for name, query in records.items() if not instant(query)]
    assert not silent, f"alert signals without data: {silent}"
    for rule in (r for r in loaded if r["type"] == "alerting"):
        names = set(re.findall(r"\b(vtx[:_][a-z0-9_:]+)", rule["query"]))
        assert names, rule["query"]
        for name in names:
            query = records.get(name, name)
            assert instant(query), f"{rule['name']} compares {name}, which has no data"


def test_install_upload_upgrade_uninstall(
    release: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ns = release
    api = api_url(ns)
    clip = media.make_clip(tmp_path_factory.mktemp("chart") / "chart.mp4", seconds=4,
                           width=854, height=480)  # fmt: skip
    view = upload_and_wait(api, clip)
    assert view["phase"] == "Ready", view
    assert "480p" in view["renditions"]
    for url in (view["playback"]["hls"], view["playback"]["ipfs"]):
        report = media.probe(url, token=stack_env()["VTX_API_TOKEN"])
        assert abs(float(report["format"]["duration"]) - 4) <= 0.2, url  # type: ignore[index]
    resource = f"v-{view['id']}"
    row = kubectl("get", "vt", resource, "-n", ns, "--no-headers").split()
    assert row[1:4] == ["Ready", "100", "1/1"]

    # The cluster's schema has no `note` yet: kubectl's strict validation refuses it.
    refused = dry_run_with_note(ns, resource)
    assert refused.returncode != 0, refused.stdout
    assert 'unknown field "spec.note"' in refused.stderr, refused.stderr

    # The next version of the chart, with a new optional CRD field and a changed setting: the
    # CRD in the cluster gains the field, and the pods roll (the ConfigMap's checksum is in the
    # pod templates)...
    before = pod_uids(ns)
    helm("upgrade", "vtx", str(chart_with_new_crd_field(tmp_path_factory.mktemp("chart-next"))),
         "-n", ns, "-f", str(CHART / "values-local.yaml"),
         "--set", "api.service.type=ClusterIP", "--set", "api.publicUrl=",
         "--set", "operator.maxRunningJobs=3", "--wait", "--timeout", "5m")  # fmt: skip
    crd = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json"))
    assert crd_spec_properties(crd)["note"]["type"] == "string"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    accepted = dry_run_with_note(ns, resource)
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["spec"]["note"] == "made before the upgrade"
    wait_until("the old pods to go", lambda: not (before & pod_uids(ns)), timeout=180)
    config = kubectl("get", "configmap", "-n", ns, "-l", "app.kubernetes.io/instance=vtx",
                     "-o", "json")  # fmt: skip
    assert '"VTX_MAX_RUNNING_JOBS": "3"' in json.dumps(json.loads(config)["items"])
    # ...and keeps the resources and what they made.
    assert kubectl("get", "vt", resource, "-n", ns, "-o", "jsonpath={.status.phase}") == "Ready"
    headers = {"Authorization": f"Bearer {stack_env()['VTX_API_TOKEN']}"}
    again = requests.get(
        f"{api_url(ns)}/v1/videos/{view['id']}", headers=headers, timeout=10
    ).json()
    assert again["cid"] == view["cid"]
    assert_complete(view["id"])

    helm("uninstall", "vtx", "-n", ns, "--wait", "--timeout", "3m")
    left = kubectl("get", "deploy,svc,configmap,role,rolebinding,sa", "-n", ns,
                   "-l", "app.kubernetes.io/instance=vtx", "-o", "name")  # fmt: skip
    assert left.strip() == "", f"workloads left behind: {left}"
    assert kubectl("get", "crd", "videotranscodes.vtx.dev", "-o", "name").strip()
    assert kubectl("get", "vt", resource, "-n", ns, "-o", "name").strip(), "the resource stays"
    store = ObjectStore(Settings.from_env(stack_env()))
    assert store.head(f"videos/{view['id']}/master.m3u8") is not None, "the outputs stay"
