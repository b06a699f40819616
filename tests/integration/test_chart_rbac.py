"""The chart's RBAC against the cluster's own authorizer: its ServiceAccounts, Roles and bindings
(ClusterRoles when cluster-wide) applied into fresh namespaces, then asked with
`kubectl auth can-i --as=system:serviceaccount:...` what each component may do."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import yaml

from tests.stack import REPO, apply, install_crd, kubectl, namespace, stack_env, wait_until

pytestmark = pytest.mark.stack

RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
VT = "videotranscodes.vtx.dev"
# (verb, resource, subresource)
Check = tuple[str, str, str]


def rbac_objects(release_namespace: str, *values: str) -> list[dict[str, Any]]:
    """The chart rendered for ``release_namespace``, only the RBAC part."""
    env = {**os.environ, **stack_env()}
    server = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    proc = subprocess.run(
        ["helm", "template", "vtx", str(REPO / "charts" / "vtx"), "-n", release_namespace,
         "--kube-version", server, *(a for v in values for a in ("--set", v))],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return [d for d in docs if d["kind"] in RBAC_KINDS]


def can(sa: tuple[str, str], check: Check, ns: str) -> bool:
    verb, resource, subresource = check
    who = f"--as=system:serviceaccount:{sa[0]}:{sa[1]}"
    args = ["auth", "can-i", verb, resource, "-n", ns, who]
    if subresource:
        args.append(f"--subresource={subresource}")
    answer = kubectl(*args, check=False).strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)} answered {answer!r}"
    return answer == "yes"


def expect(sa: tuple[str, str], ns: str, allowed: list[Check], denied: list[Check]) -> None:
    """Every allowed check passes (waiting for the bindings to reach the authorizer), then every
    denied one is refused."""
    for check in allowed:
        what = f"{sa[1]} may {' '.join(check)} in {ns}"
        wait_until(what, functools.partial(can, sa, check, ns), timeout=30)
    wrongly = [c for c in denied if can(sa, c, ns)]
    assert not wrongly, f"{sa[1]} may {wrongly} in {ns}"


@contextmanager
def cluster_objects(objects: list[dict[str, Any]]) -> Iterator[None]:
    """Apply objects, deleting the cluster-scoped ones afterwards (namespaces go on their own)."""
    try:
        apply(*objects)
        yield
    finally:
        for o in objects:
            if o["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kubectl("delete", o["kind"], o["metadata"]["name"], "--wait=false", check=False)


API_MAY = [("create", VT, ""), ("get", VT, ""), ("list", VT, ""), ("watch", VT, ""),
           ("delete", VT, "")]  # fmt: skip
API_MAY_NOT = [
    ("create", "jobs.batch", ""),
    ("create", "pods", ""),
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("patch", VT, "status"),
    ("update", VT, ""),
]
JOBRUNNER_MAY: list[Check] = []
JOBRUNNER_MAY_NOT = [
    ("patch", VT, "status"),
    ("get", "secrets", ""),
    ("create", "jobs.batch", ""),
    ("get", "pods", ""),
    ("update", VT, ""),
    ("get", VT, ""),
    ("update", VT, "status"),
]
OPERATOR_MAY = [
    ("create", "jobs.batch", ""),
    ("delete", "jobs.batch", ""),
    ("watch", "jobs.batch", ""),
    ("delete", "pods", ""),
    ("list", "pods", ""),
    # A job pod its lost node cannot end is set Failed (vtx/operator/lost.py).
    ("patch", "pods", "status"),
    ("watch", VT, ""),
    ("patch", VT, ""),
    ("patch", VT, "status"),
    ("create", "events", ""),
    ("create", "events.events.k8s.io", ""),
]
OPERATOR_MAY_NOT = [
    ("get", "secrets", ""),
    ("list", "secrets", ""),
    ("create", "pods", ""),
    ("patch", "pods", ""),
    ("delete", VT, ""),
    ("create", "configmaps", ""),
]
# Outside the namespaces it watches, the operator may touch nothing of vtx's.
OPERATOR_ELSEWHERE_MAY_NOT = [
    ("create", "jobs.batch", ""),
    ("list", "jobs.batch", ""),
    ("delete", "pods", ""),
    ("patch", "pods", "status"),
    ("list", VT, ""),
    ("get", VT, ""),
    ("patch", VT, ""),
    ("patch", VT, "status"),
    ("create", VT, ""),
    ("get", "secrets", ""),
]


# Nodes are cluster-scoped: one ClusterRole lets the operator read them (to choose grouping, and
# to see that a job pod's node is lost).
NODES = [("list", "nodes", ""), ("get", "nodes", "")]
NOT_NODES = [("patch", "nodes", ""), ("delete", "nodes", ""), ("watch", "nodes", "")]


def test_each_component_may_do_only_its_part() -> None:
    install_crd()
    # The node reader's name holds the (fresh) release namespace: no two runs share it.
    with (
        namespace("chart-rbac") as ns,
        namespace("chart-rbac-other") as other,
        cluster_objects(rbac_objects(ns)),
    ):
        expect((ns, "vtx-api"), ns, API_MAY, API_MAY_NOT)
        expect((ns, "vtx-jobrunner"), ns, JOBRUNNER_MAY, JOBRUNNER_MAY_NOT)
        peering = [("get", "kopfpeerings.kopf.dev", ""), ("patch", "kopfpeerings.kopf.dev", "")]
        # The queue consumer creates the resources uploads lack, in the release namespace.
        intake = [("create", VT, "")]
        expect(
            (ns, "vtx-operator"), ns, OPERATOR_MAY + peering + intake + NODES,
            OPERATOR_MAY_NOT + NOT_NODES,
        )  # fmt: skip
        expect((ns, "vtx-operator"), other, [], OPERATOR_ELSEWHERE_MAY_NOT)
        expect((ns, "vtx-api"), other, [], API_MAY + NODES)
        expect((ns, "vtx-jobrunner"), ns, [], NODES)


def test_watched_namespaces_get_the_operator_and_jobrunner_roles() -> None:
    install_crd()
    with ExitStack() as stack:
        ns = stack.enter_context(namespace("chart-rbac"))
        watched = stack.enter_context(namespace("chart-rbac-watched"))
        other = stack.enter_context(namespace("chart-rbac-other"))
        stack.enter_context(
            cluster_objects(rbac_objects(ns, f"operator.watchNamespaces={{{watched}}}"))
        )
        # Resources of uploads are created in the release namespace only.
        not_here = [*OPERATOR_MAY_NOT, ("create", VT, "")]
        expect((ns, "vtx-operator"), watched, OPERATOR_MAY, not_here)
        expect((watched, "vtx-jobrunner"), watched, JOBRUNNER_MAY, JOBRUNNER_MAY_NOT)
        expect((ns, "vtx-operator"), other, [], OPERATOR_ELSEWHERE_MAY_NOT)
        expect((ns, "vtx-api"), watched, [], API_MAY)


def test_cluster_wide_operator_reaches_every_namespace_but_no_secret() -> None:
    install_crd()
    name = f"chart-rbac-{uuid.uuid4().hex[:6]}"  # cluster-scoped names: unique per run
    with namespace("chart-rbac") as ns, namespace("chart-rbac-other") as other:
        objects = rbac_objects(ns, "operator.watchNamespaces={*}", f"fullnameOverride={name}")
        with cluster_objects(objects):
            operator = (ns, f"{name}-operator")
            cluster_peering = [("patch", "clusterkopfpeerings.kopf.dev", "")]
            for where in (ns, other):
                expect(operator, where, OPERATOR_MAY, OPERATOR_MAY_NOT)
            expect(operator, ns, cluster_peering + NODES, NOT_NODES)
            expect((ns, f"{name}-jobrunner"), ns, JOBRUNNER_MAY, JOBRUNNER_MAY_NOT)
            expect((ns, f"{name}-api"), other, [], API_MAY)
