"""The Helm chart, rendered with the helm binary the local stack builds (no cluster needed):
lint, defaults and local values, locked-down pods, no secrets, a strict values schema, RBAC,
CRD copies, the rendered manifests/ and the Grafana dashboard."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vtx.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vtx"
LOCAL_VALUES = CHART / "values-local.yaml"
NAMESPACE = "vtx"
SECRET_VARS = {
    "VTX_DATABASE_URL",
    "VTX_S3_ACCESS_KEY",
    "VTX_S3_SECRET_KEY",
    "VTX_PULSAR_URL",
    "VTX_API_TOKENS",
}
METRICS = {
    "vtx_resources",
    "vtx_transcode_jobs_running",
    "vtx_transcode_jobs_queued",
    "vtx_transcode_jobs_failed_total",
    "vtx_reconcile_errors_total",
    "vtx_stalled_pods_total",
    "vtx_time_to_ready_seconds",
    "vtx_encode_speed",
    "vtx_api_uploads_total",
    "vtx_api_requests_total",
    "vtx_api_request_seconds",
    "vtx_api_websocket_clients",
    "vtx_api_status_events_total",
}
HISTOGRAMS = {"vtx_time_to_ready_seconds", "vtx_encode_speed", "vtx_api_request_seconds"}
Doc = dict[str, Any]


def _versions() -> dict[str, str]:
    """dev/versions.env: the tool versions the stack builds."""
    pairs = (
        line.split("=", 1)
        for line in (REPO / "dev" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {k: v.strip('"') for k, v in pairs}


VERSIONS = _versions()
# The helm the stack builds from Go modules defaults to Kubernetes v1.20; say which one we run.
KUBE_VERSION = VERSIONS["K8S_VERSION"].removeprefix("v")


@pytest.fixture(scope="session")
def helm() -> Path:
    cache = Path(os.environ.get("VTX_CACHE", Path.home() / ".cache" / "vtx"))
    path = cache / f"helm-{VERSIONS['HELM_VERSION']}" / "bin" / "helm"
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm is not built at {path}: run `make up`, which builds it")
    return path


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def template_args(*args: str) -> list[str]:
    return ["template", "vtx", str(CHART), "-n", NAMESPACE, "--kube-version", KUBE_VERSION, *args]


def render(helm: Path, *args: str) -> list[Doc]:
    proc = run_helm(helm, *template_args(*args))
    assert proc.returncode == 0, f"helm template {' '.join(args)} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def values_file(tmp_path: Path, values: Doc) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def find(docs: list[Doc], kind: str, name: str, namespace: str | None = NAMESPACE) -> Doc:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and d["metadata"].get("namespace") == namespace
    ]
    assert len(found) == 1, f"expected one {kind} {namespace}/{name}, found {len(found)}"
    return found[0]


def of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in kinds]


NODE_READER = f"vtx-operator-{NAMESPACE}-nodes"


def cluster_scoped_but_the_node_reader(docs: list[Doc]) -> list[Doc]:
    """What the release makes outside namespaces besides the operator's ClusterRole to read
    nodes (and its binding), checked to grant that and nothing else."""
    reader = find(docs, "ClusterRole", NODE_READER, None)
    assert rules(reader) == [(("",), ("nodes",), ("get", "list"))]
    binding = find(docs, "ClusterRoleBinding", NODE_READER, None)
    assert binding["roleRef"]["name"] == NODE_READER
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vtx-operator", "namespace": NAMESPACE}
    ]
    return [
        d
        for d in of_kind(docs, "ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering")
        if d["metadata"]["name"] != NODE_READER
    ]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for d in of_kind(docs, "Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def rules(role: Doc) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    return [
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"])))
        for r in role["rules"]
    ]


def settings_env(docs: list[Doc], namespace: str = NAMESPACE) -> dict[str, str]:
    data: dict[str, str] = find(docs, "ConfigMap", "vtx-config", namespace)["data"]
    return data


@pytest.fixture(scope="module")
def defaults(helm: Path) -> list[Doc]:
    return render(helm)


@pytest.fixture(scope="module")
def local(helm: Path) -> list[Doc]:
    return render(helm, "-f", str(LOCAL_VALUES))


@pytest.fixture(scope="module")
def clusterwide(helm: Path) -> list[Doc]:
    return render(helm, "--set", "operator.watchNamespaces={*}")


@pytest.fixture(scope="module")
def two_more_namespaces(helm: Path) -> list[Doc]:
    return render(helm, "--set", "operator.watchNamespaces={media,archive}")


@pytest.mark.parametrize(
    "args",
    [[], ["--strict"], ["--strict", "-f", str(LOCAL_VALUES)]],
    ids=["default", "strict", "strict-local"],
)
def test_helm_lint_is_clean(helm: Path, args: list[str]) -> None:
    proc = run_helm(helm, "lint", str(CHART), "--kube-version", KUBE_VERSION, *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "[WARNING]" not in output
    assert "[ERROR]" not in output
    assert "0 chart(s) failed" in output


def test_chart_and_package_versions_agree() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert package is not None
    assert chart["version"] == "0.4.0"
    # `make images` tags the images with the package version; the chart's default tag is this.
    assert chart["appVersion"] == package.group(1)
    assert chart["kubeVersion"] == ">=1.29.0-0"


def test_artifacthub_annotations_name_the_images_and_crds() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    notes = chart["annotations"]
    images = {i["image"] for i in yaml.safe_load(notes["artifacthub.io/images"])}
    assert images == {f"localhost/vtx-{n}:{chart['appVersion']}" for n in ("operator", "job")}
    crds = [d for p in sorted((REPO / "crds").iterdir()) for d in yaml.safe_load_all(p.read_text())
            if d]  # fmt: skip
    listed = {(c["name"], c["kind"], c["version"])
              for c in yaml.safe_load(notes["artifacthub.io/crds"])}  # fmt: skip
    assert listed == {
        (d["metadata"]["name"], d["spec"]["names"]["kind"], v["name"])
        for d in crds for v in d["spec"]["versions"] if v["storage"]
    }  # fmt: skip
    changes = yaml.safe_load(notes["artifacthub.io/changes"])
    assert changes
    assert all(c["kind"] in {"added", "changed", "deprecated", "removed", "fixed", "security"}
               for c in changes)  # fmt: skip


def test_defaults_render_every_part(defaults: list[Doc]) -> None:
    api = find(defaults, "Deployment", "vtx-api")
    operator = find(defaults, "Deployment", "vtx-operator")
    assert api["spec"]["replicas"] == 2
    assert operator["spec"]["replicas"] == 1
    for sa in ("vtx-api", "vtx-operator"):
        find(defaults, "ServiceAccount", sa)
        find(defaults, "Role", sa)
        find(defaults, "RoleBinding", sa)
    find(defaults, "ServiceAccount", "vtx-jobrunner")
    assert find(defaults, "Service", "vtx-api")["spec"]["type"] == "ClusterIP"
    find(defaults, "Service", "vtx-operator-metrics")
    find(defaults, "PodDisruptionBudget", "vtx-api")
    find(defaults, "KopfPeering", "vtx")
    find(defaults, "ConfigMap", "vtx-dashboard")
    assert not cluster_scoped_but_the_node_reader(defaults)
    assert not of_kind(defaults, "ServiceMonitor"), "the ServiceMonitor is off by default"

    image = "localhost/vtx-operator:0.1.0"
    assert [c["image"] for c in containers(api["spec"]["template"]["spec"])] == [image, image]
    (op,) = operator["spec"]["template"]["spec"]["containers"]
    assert op["image"] == image
    assert op["imagePullPolicy"] == "IfNotPresent"
    assert op["args"] == [
        "operator", "--health-address", "0.0.0.0:8090", "--peering", "vtx", "--namespace", "vtx"
    ]  # fmt: skip
    assert {"name": "VTX_METRICS_ADDRESS", "value": "0.0.0.0:9108"} in op["env"]
    env = settings_env(defaults)
    assert env["VTX_JOB_IMAGE"] == "localhost/vtx-job:0.1.0"
    assert env["VTX_JOB_IMAGE_PULL_POLICY"] == "IfNotPresent"
    assert env["VTX_JOB_SERVICE_ACCOUNT"] == "vtx-jobrunner"
    assert env["VTX_JOB_CONFIGMAP"] == "vtx-config"
    assert env["VTX_NAMESPACE"] == NAMESPACE
    assert "VTX_JOB_SECRET" not in env, "job pods take single keys, not a whole Secret"


def test_api_runs_migrations_first_and_probes_health(defaults: list[Doc]) -> None:
    spec = find(defaults, "Deployment", "vtx-api")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    (api,) = spec["containers"]
    assert init["args"] == ["db", "migrate"]
    assert api["args"] == ["api", "--address", "0.0.0.0:8000"]
    assert init["env"] == api["env"][:-1], "migrations get the same settings as the API"
    assert init["envFrom"] == api["envFrom"]
    assert api["env"][-1]["name"] == "VTX_API_TOKENS"
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    op = find(defaults, "Deployment", "vtx-operator")["spec"]["template"]["spec"]["containers"][0]
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert op["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_local_values_point_at_the_local_stack(local: list[Doc]) -> None:
    service = find(local, "Service", "vtx-api")["spec"]
    assert service["type"] == "NodePort"
    assert service["ports"][0]["nodePort"] == 30080
    env = settings_env(local)
    deps = "vtx-deps.svc.cluster.local"
    assert env["VTX_S3_ENDPOINT"] == f"http://s3.{deps}:7070"
    assert env["VTX_S3_PUBLIC_ENDPOINT"] == "http://127.0.0.1:7070"
    assert env["VTX_PULSAR_ADMIN_URL"] == f"http://pulsar.{deps}:8080"
    assert env["VTX_IPFS_API_URL"] == f"http://ipfs.{deps}:5001"
    assert env["VTX_IPFS_GATEWAY_URL"] == "http://127.0.0.1:8081"
    assert env["VTX_JOB_IMAGE_PULL_POLICY"] == "Never"
    for name, spec in pod_specs(local):
        for c in containers(spec):
            assert c["imagePullPolicy"] == "Never", f"{name}/{c['name']}"


@pytest.mark.parametrize("rendered", ["defaults", "local", "clusterwide"])
def test_every_pod_and_container_is_locked_down(
    rendered: str, request: pytest.FixtureRequest
) -> None:
    docs: list[Doc] = request.getfixturevalue(rendered)
    specs = dict(pod_specs(docs))
    assert set(specs) == {"vtx-api", "vtx-operator"}
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == 10001, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in containers(spec):
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] == 10001, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert c["resources"]["requests"], where
            assert c["resources"]["limits"], where
            # The root file system is read-only: /tmp is an emptyDir.
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where


@pytest.mark.parametrize("rendered", ["defaults", "local", "clusterwide", "two_more_namespaces"])
def test_no_secret_is_rendered(rendered: str, request: pytest.FixtureRequest) -> None:
    docs: list[Doc] = request.getfixturevalue(rendered)
    assert not of_kind(docs, "Secret")
    for cm in of_kind(docs, "ConfigMap"):
        assert not SECRET_VARS & set(cm["data"]), cm["metadata"]["name"]
    for name, spec in pod_specs(docs):
        for c in containers(spec):
            for var in c.get("env", []):
                if var["name"] in SECRET_VARS:
                    assert "value" not in var, f"{name}/{c['name']} {var['name']}"
                    assert set(var["valueFrom"]) == {"secretKeyRef"}
    text = yaml.safe_dump_all(docs)
    # Credentials in a URL, a token of `vtx token create`, a hex digest, a private key.
    for pattern in (r"://[^/\s:@]+:[^/\s@]+@", r"\bvtx_[A-Za-z0-9_-]{40,}", r"\b[0-9a-f]{64}\b",
                    r"PRIVATE KEY"):  # fmt: skip
        found = [m for m in re.findall(pattern, text) if not _is_config_checksum(m, docs)]
        assert not found, f"{pattern} matched {found}"


def _is_config_checksum(match: str, docs: list[Doc]) -> bool:
    return any(
        d["spec"]["template"]["metadata"]["annotations"].get("checksum/config") == match
        for d in of_kind(docs, "Deployment")
    )


def test_credentials_come_from_the_named_secret_keys(defaults: list[Doc]) -> None:
    api = find(defaults, "Deployment", "vtx-api")["spec"]["template"]["spec"]["containers"][0]
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in api["env"]}
    assert refs == {
        "VTX_DATABASE_URL": {"name": "vtx-database", "key": "url"},
        "VTX_S3_ACCESS_KEY": {"name": "vtx-storage", "key": "accessKey"},
        "VTX_S3_SECRET_KEY": {"name": "vtx-storage", "key": "secretKey"},
        "VTX_PULSAR_URL": {"name": "vtx-pulsar", "key": "url"},
        "VTX_API_TOKENS": {"name": "vtx-api", "key": "tokens"},
    }
    op = find(defaults, "Deployment", "vtx-operator")["spec"]["template"]["spec"]["containers"][0]
    assert "VTX_API_TOKENS" not in {v["name"] for v in op["env"]}, "only the API reads tokens"


def test_settings_are_accepted_by_the_settings_module(defaults: list[Doc]) -> None:
    """The ConfigMap plus the secret variables (placeholders here) is a configuration the
    components start with; job pods get the same Secret keys by reference."""
    env = {**settings_env(defaults), **{var: "placeholder" for var in SECRET_VARS}}
    env["VTX_PULSAR_URL"] = "pulsar://pulsar.example:6650"
    env.pop("VTX_API_TOKENS")
    settings = Settings.from_env(env)
    assert settings.job_secret_env == (
        ("VTX_DATABASE_URL", "vtx-database", "url"),
        ("VTX_PULSAR_URL", "vtx-pulsar", "url"),
        ("VTX_S3_ACCESS_KEY", "vtx-storage", "accessKey"),
        ("VTX_S3_SECRET_KEY", "vtx-storage", "secretKey"),
    )
    assert settings.max_upload_bytes == 10 * 1024**3
    assert settings.namespace == NAMESPACE
    assert settings.job_memory_limit == "2Gi"


def test_a_changed_setting_changes_the_pods_checksum(helm: Path) -> None:
    def checksums(*args: str) -> dict[str, str]:
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
            for d in of_kind(render(helm, *args), "Deployment")
        }

    before = checksums()
    assert set(before) == {"vtx-api", "vtx-operator"}
    assert checksums() == before, "the same values give the same checksum"
    after = checksums("--set", "operator.maxRunningJobs=7")
    assert all(after[name] != before[name] for name in before)


# (values, text the error must contain: the field's path)
BAD_VALUES: list[tuple[Doc, str]] = [
    ({"api": {"replicas": -1}}, "/api/replicas"),
    ({"operator": {"replicas": -2}}, "/operator/replicas"),
    ({"api": {"replicas": "two"}}, "/api/replicas"),
    ({"api": {"openReads": "yes"}}, "/api/openReads"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"jobrunner": {"image": {"pullPolicy": "always"}}}, "/jobrunner/image/pullPolicy"),
    ({"jobrunner": {"resources": {"limits": {"memory": "2GB"}}}},
     "/jobrunner/resources/limits/memory"),
    ({"api": {"resources": {"requests": {"cpu": "lots"}}}}, "/api/resources/requests/cpu"),
    ({"operator": {"resources": {"limits": {"cpu": -1}}}}, "/operator/resources/limits/cpu"),
    ({"jobrunner": {"scratchLimit": "4 GiB"}}, "/jobrunner/scratchLimit"),
    ({"unknownKey": 1}, "'unknownKey'"),
    ({"api": {"replica": 3}}, "'replica'"),
    ({"servers": {"s3": {"endpoint": "s3.example:7070"}}}, "/servers/s3/endpoint"),
    ({"servers": {"s3": {"addressingStyle": "dns"}}}, "/servers/s3/addressingStyle"),
    ({"api": {"service": {"type": "Ingress"}}}, "/api/service/type"),
    ({"api": {"uploadPartSize": 1024}}, "/api/uploadPartSize"),
    ({"api": {"corsOrigins": ["example.com"]}}, "/api/corsOrigins/0"),
    ({"operator": {"watchNamespaces": ["Bad_NS"]}}, "/operator/watchNamespaces/0"),
    ({"operator": {"maxRunningJobs": 0}}, "/operator/maxRunningJobs"),
    ({"jobrunner": {"backoffLimit": -1}}, "/jobrunner/backoffLimit"),
    ({"secrets": {"databaseUrl": {"name": "vtx-database", "key": ""}}},
     "/secrets/databaseUrl/key"),
    ({"secrets": {"apiTokens": {"name": "vtx-api", "key": None}}}, "/secrets/apiTokens"),
    ({"extraSettings": {"max_seconds": "10"}}, "'max_seconds'"),
    ({"extraSettings": {"VTX_MAX_SOURCE_SECONDS": 10}}, "/extraSettings/VTX_MAX_SOURCE_SECONDS"),
    # Checked by the templates rather than the schema:
    ({"extraSettings": {"VTX_DATABASE_URL": "postgresql://x"}},
     "extraSettings.VTX_DATABASE_URL"),
    ({"extraSettings": {"VTX_S3_BUCKET": "other"}}, "extraSettings.VTX_S3_BUCKET"),
    ({"operator": {"watchNamespaces": ["*", "media"]}}, "operator.watchNamespaces"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "field"), BAD_VALUES, ids=[f for _, f in BAD_VALUES])
def test_bad_values_are_refused_naming_the_field(
    helm: Path, tmp_path: Path, values: Doc, field: str
) -> None:
    proc = run_helm(helm, *template_args("-f", values_file(tmp_path, values)))
    assert proc.returncode != 0, f"{values} was accepted"
    assert field in proc.stderr, proc.stderr


def test_good_values_beside_the_defaults_are_accepted(helm: Path, tmp_path: Path) -> None:
    values = {
        "api": {"replicas": 0, "resources": {"requests": {"cpu": 0.25, "memory": 268435456}},
                "podDisruptionBudget": {"maxUnavailable": "50%"},
                "corsOrigins": ["https://videos.example.com", "*"]},
        "jobrunner": {"image": {"tag": "1.2.3"}, "resources": {"limits": {"cpu": 4}},
                      "ingestCpuRequest": "50m"},
        "extraSettings": {"VTX_MAX_SOURCE_SECONDS": "7200"},
        "metrics": {"serviceMonitor": {"enabled": True}, "dashboard": {"enabled": False}},
    }  # fmt: skip
    docs = render(helm, "-f", values_file(tmp_path, values))
    env = settings_env(docs)
    assert env["VTX_MAX_SOURCE_SECONDS"] == "7200"
    assert env["VTX_JOB_IMAGE"] == "localhost/vtx-job:1.2.3"
    assert env["VTX_JOB_CPU_LIMIT"] == "4"
    assert env["VTX_INGEST_CPU_REQUEST"] == "50m"
    assert env["VTX_CORS_ORIGINS"] == "https://videos.example.com,*"
    assert {d["metadata"]["name"] for d in of_kind(docs, "ServiceMonitor")} == {
        "vtx-api",
        "vtx-operator",
    }
    assert not [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "vtx-dashboard"]


def test_api_role_may_only_create_read_and_delete_videotranscodes(defaults: list[Doc]) -> None:
    role = find(defaults, "Role", "vtx-api")
    assert rules(role) == [
        (("vtx.dev",), ("videotranscodes",), ("create", "delete", "get", "list", "watch"))
    ]
    binding = find(defaults, "RoleBinding", "vtx-api")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "vtx-api",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vtx-api", "namespace": NAMESPACE}
    ]


@pytest.mark.parametrize("rendered", ["defaults", "clusterwide", "two_more_namespaces"])
def test_job_pods_have_an_account_with_no_token_and_no_rights(
    rendered: str, request: pytest.FixtureRequest
) -> None:
    docs: list[Doc] = request.getfixturevalue(rendered)
    accounts = [
        d for d in of_kind(docs, "ServiceAccount") if d["metadata"]["name"] == "vtx-jobrunner"
    ]
    expected = {
        "defaults": {NAMESPACE}, "clusterwide": {NAMESPACE},
        "two_more_namespaces": {NAMESPACE, "media", "archive"},
    }  # fmt: skip
    assert {a["metadata"]["namespace"] for a in accounts} == expected[rendered]
    for account in accounts:
        assert account["automountServiceAccountToken"] is False
        ns = account["metadata"]["namespace"]
        assert settings_env(docs, ns)["VTX_JOB_SERVICE_ACCOUNT"] == "vtx-jobrunner"
    bound = [
        d for d in of_kind(docs, "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
        if d["metadata"]["name"] == "vtx-jobrunner"
    ]  # fmt: skip
    assert bound == [], "job pods may do nothing in the cluster"


OPERATOR_RULES = [
    (("vtx.dev",), ("videotranscodes",), ("get", "list", "patch", "update", "watch")),
    (("vtx.dev",), ("videotranscodes/status",), ("get", "patch", "update")),
    (("batch",), ("jobs",), ("create", "delete", "get", "list", "patch", "watch")),
    (("",), ("pods",), ("delete", "get", "list", "watch")),
    (("",), ("pods/status",), ("patch",)),
    (("",), ("events",), ("create", "patch")),
    (("events.k8s.io",), ("events",), ("create", "patch")),
]
INTAKE_RULE = (("vtx.dev",), ("videotranscodes",), ("create",))


def test_operator_roles_in_each_watched_namespace(two_more_namespaces: list[Doc]) -> None:
    docs = two_more_namespaces
    assert not cluster_scoped_but_the_node_reader(docs)
    peering = (("kopf.dev",), ("kopfpeerings",), ("get", "list", "patch", "watch"))
    for ns in (NAMESPACE, "media", "archive"):
        role = find(docs, "Role", "vtx-operator", ns)
        # Only the release namespace, where the queue consumer creates missing resources.
        intake = [INTAKE_RULE] if ns == NAMESPACE else []
        assert rules(role) == [*OPERATOR_RULES, *intake, peering], ns
        binding = find(docs, "RoleBinding", "vtx-operator", ns)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "vtx-operator", "namespace": NAMESPACE}
        ]
        find(docs, "KopfPeering", "vtx", ns)
        find(docs, "ConfigMap", "vtx-config", ns)
    op = find(docs, "Deployment", "vtx-operator")["spec"]["template"]["spec"]["containers"][0]
    assert op["args"][5:] == ["--namespace", NAMESPACE, "--namespace", "media",
                              "--namespace", "archive"]  # fmt: skip


def test_without_node_reading_the_release_makes_nothing_cluster_wide(helm: Path) -> None:
    docs = render(helm, "--set", "operator.readNodes=false")
    assert not of_kind(docs, "ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering")


def test_operator_cluster_role_only_when_cluster_wide(clusterwide: list[Doc]) -> None:
    docs = clusterwide
    role = find(docs, "ClusterRole", "vtx-operator", None)
    peering = (("kopf.dev",), ("clusterkopfpeerings",), ("get", "list", "patch", "watch"))
    assert rules(role) == [*OPERATOR_RULES, INTAKE_RULE, peering]
    binding = find(docs, "ClusterRoleBinding", "vtx-operator", None)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vtx-operator", "namespace": NAMESPACE}
    ]
    find(docs, "ClusterKopfPeering", "vtx", None)
    assert not of_kind(docs, "KopfPeering")
    assert not [d for d in of_kind(docs, "Role") if d["metadata"]["name"] == "vtx-operator"]
    op = find(docs, "Deployment", "vtx-operator")["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace" not in op["args"]


@pytest.mark.parametrize("rendered", ["defaults", "clusterwide", "two_more_namespaces"])
def test_no_role_grants_secrets_or_wildcards(rendered: str, request: pytest.FixtureRequest) -> None:
    docs: list[Doc] = request.getfixturevalue(rendered)
    roles = of_kind(docs, "Role", "ClusterRole")
    assert roles
    for role in roles:
        for groups, resources, verbs in rules(role):
            where = f"{role['kind']} {role['metadata']['name']}"
            assert "secrets" not in resources, where
            assert "*" not in groups + resources + verbs, where
            assert not {"escalate", "bind", "impersonate"} & set(verbs), where


RULES = CHART / "files" / "prometheus-rules.yaml"


def test_alert_rules_pass_promtool_and_render_as_a_prometheusrule(helm: Path) -> None:
    cache = Path(os.environ.get("VTX_CACHE", Path.home() / ".cache" / "vtx"))
    promtool = cache / f"prometheus-{VERSIONS['PROMETHEUS_VERSION']}" / "bin" / "promtool"
    if not os.access(promtool, os.X_OK):
        pytest.fail(f"promtool is not built at {promtool}: run `make up`, which builds it")
    check = subprocess.run([str(promtool), "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    source = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in source["groups"] for r in g["rules"] if "alert" in r}
    # What an on-call person needs to hear about.
    assert {"VtxTranscodeJobsFailing", "VtxTranscodeQueueGrowing", "VtxJobPodsStalling",
            "VtxOutboxBacklog", "VtxWebSocketDrops"} <= alerts  # fmt: skip
    exported = METRICS | {"vtx_outbox_pending_events", "vtx_outbox_oldest_pending_seconds",
                          "vtx_api_websocket_dropped_total"}  # fmt: skip
    for group in source["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"\b(vtx_[a-z0-9_]+)", rule["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", name)
                assert name in exported or base in HISTOGRAMS, f"{name} is not exported"
    assert not of_kind(render(helm), "PrometheusRule")
    rendered = find(render(helm, "--set", "metrics.prometheusRule.enabled=true"),
                    "PrometheusRule", "vtx")  # fmt: skip
    assert rendered["spec"] == source


def test_chart_crds_are_the_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in sorted((REPO / "crds").iterdir())}
    templated = {p.name: p.read_bytes() for p in sorted((CHART / "files" / "crds").iterdir())}
    first = {p.name: p.read_bytes() for p in sorted((CHART / "crds").iterdir())}
    # vtx's own CRD is a template (upgraded); kopf's peering CRDs are in crds/ (installed first,
    # as the chart's KopfPeering needs them when Helm maps the release's kinds).
    assert sorted(templated) == ["videotranscodes.vtx.dev.yaml"]
    assert sorted(first) == ["kopf-peering.yaml"]
    assert sorted({**templated, **first}) == sorted(top), "the chart must hold the files of crds/"
    for name, data in {**templated, **first}.items():
        assert data == top[name], f"the chart's copy of crds/{name} differs"


def _without_meta(doc: Doc) -> Doc:
    meta = {k: v for k, v in doc["metadata"].items() if k not in ("annotations", "labels")}
    return {**doc, "metadata": meta}


def test_release_installs_the_crds_as_they_are_and_keeps_them(
    defaults: list[Doc], helm: Path
) -> None:
    sources = [yaml.safe_load((REPO / "crds" / "videotranscodes.vtx.dev.yaml").read_text())]
    rendered = of_kind(defaults, "CustomResourceDefinition")
    by_name = {d["metadata"]["name"]: d for d in rendered}
    assert sorted(by_name) == sorted(d["metadata"]["name"] for d in sources)
    for source in sources:
        crd = by_name[source["metadata"]["name"]]
        # Same schema, names and versions, value for value (numbers too) as crds/.
        assert _without_meta(crd) == _without_meta(source), source["metadata"]["name"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        for key, value in source["metadata"].get("labels", {}).items():
            assert crd["metadata"]["labels"][key] == value
    unkept = of_kind(render(helm, "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert len(unkept) == len(sources)
    assert all(
        "helm.sh/resource-policy" not in d["metadata"].get("annotations", {}) for d in unkept
    )
    assert not of_kind(render(helm, "--set", "crds.install=false"), "CustomResourceDefinition")


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_manifests_are_what_the_chart_renders_now(helm: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HELM": str(helm)}
    for out in (tmp_path / "a", tmp_path / "b"):
        subprocess.run(
            [str(REPO / "dev" / "render-manifests.sh"), str(out)],
            env=env, check=True, timeout=120, capture_output=True,
        )  # fmt: skip
    rendered = _tree(tmp_path / "a")
    assert rendered == _tree(tmp_path / "b"), "rendering twice gave different bytes"
    assert {"vtx.yaml", "crds/videotranscodes.vtx.dev.yaml", "crds/kopf-peering.yaml"} <= set(
        rendered
    )
    committed = _tree(REPO / "manifests")
    assert sorted(committed) == sorted(rendered), "manifests/ is stale: run `make manifests`"
    for name, data in rendered.items():
        assert committed[name] == data, f"manifests/{name} is stale: run `make manifests`"
    docs = [d for d in yaml.safe_load_all(rendered["vtx.yaml"]) if d]
    assert find(docs, "Deployment", "vtx-api")["spec"]["replicas"] == 2


def _exprs(panels: list[Doc]) -> Iterator[str]:
    for panel in panels:
        yield from (t["expr"] for t in panel.get("targets", []))
        yield from _exprs(panel.get("panels", []))


def test_grafana_dashboard_uses_only_known_metrics(defaults: list[Doc]) -> None:
    cm = find(defaults, "ConfigMap", "vtx-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["vtx.json"])
    exprs = list(_exprs(dashboard["panels"]))
    assert exprs
    used = set()
    for expr in exprs:
        for name in re.findall(r"\bvtx_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base in HISTOGRAMS:
                name = base
            assert name in METRICS, f"{name} (in {expr}) is not a vtx metric"
            used.add(name)
    assert used == METRICS, f"no panel shows {sorted(METRICS - used)}"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("upload", "queue", "jobs", "time to ready", "encode speed", "latency",
                  "websocket", "reconcile"):  # fmt: skip
        assert topic in titles, f"no panel titled for {topic}"


def test_optional_tokens_reach_the_components_that_use_them(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, "-f", values_file(tmp_path, {"secrets": {
        "ipfsApiToken": {"name": "vtx-ipfs", "key": "token"},
        "jobIpfsApiToken": {"name": "vtx-ipfs-job", "key": "token"},
        "pulsarToken": {"name": "vtx-pulsar-token", "key": "token"},
    }}))  # fmt: skip
    for component in ("vtx-api", "vtx-operator"):
        spec = find(docs, "Deployment", component)["spec"]["template"]["spec"]
        refs = {
            v["name"]: v["valueFrom"]["secretKeyRef"]
            for v in spec["containers"][0]["env"] if "valueFrom" in v
        }  # fmt: skip
        assert refs["VTX_IPFS_API_TOKEN"] == {"name": "vtx-ipfs", "key": "token"}
        assert refs["VTX_PULSAR_TOKEN"] == {"name": "vtx-pulsar-token", "key": "token"}
    job_refs = settings_env(docs)["VTX_JOB_SECRET_ENV"].split(",")
    assert "VTX_IPFS_API_TOKEN=vtx-ipfs-job/token" in job_refs, "job pods get the add-only token"
    assert "VTX_PULSAR_TOKEN=vtx-pulsar-token/token" in job_refs


def test_the_job_pods_network_policy(helm: Path) -> None:
    local = render(helm, "-f", str(CHART / "values-local.yaml"))
    policy = find(local, "NetworkPolicy", "vtx-jobrunner")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "vtx-jobrunner"}}
    assert policy["ingress"] == [], "nothing connects to a job pod"
    dns, servers = policy["egress"]
    assert dns["to"] == [{"ipBlock": {"cidr": "10.244.0.1/32"}}]
    assert {p["port"] for p in servers["ports"]} == {5432, 7070, 6650, 5001}, "not 6443"
    default = find(render(helm), "NetworkPolicy", "vtx-jobrunner")["spec"]
    assert default["egress"][1]["to"][0]["ipBlock"]["except"] == ["169.254.0.0/16"]
