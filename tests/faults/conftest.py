"""The fault suite uses the stack's servers as the integration tests do, and a namespace, an
operator and an API of its own per module: the operator is started and stopped by the tests
(with failpoints armed, or killed at random)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import db, ipfs, kubeconfig, settings, store
from tests.services import Process, api_process, free_port, operator_process, started
from tests.stack import job_namespace

__all__ = ["db", "ipfs", "kubeconfig", "settings", "store"]


@pytest.fixture(scope="module")
def ns(request: pytest.FixtureRequest) -> Iterator[str]:
    with job_namespace(f"vtx-fault-{request.module.__name__.rsplit('_', 1)[-1][:8]}") as name:
        yield name


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, ns: str) -> Iterator[Process]:
    process = api_process(tmp_path_factory.mktemp("api") / "api.log", ns)
    with started(process):
        yield process


@pytest.fixture
def operator(tmp_path_factory: pytest.TempPathFactory, ns: str) -> Iterator[Process]:
    """An operator for one test, not started: the test starts it (and kills it)."""
    process = operator_process(
        tmp_path_factory.mktemp("operator") / "operator.log", ns,
        health_port=free_port(), metrics_port=free_port(), env={"VTX_MAX_RUNNING_JOBS": "4"},
    )  # fmt: skip
    try:
        yield process
    finally:
        process.stop()
