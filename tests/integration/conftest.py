from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.stack import stack_env
from vtx.core.db import Database, migrate
from vtx.core.ipfs import IpfsClient
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def kubeconfig() -> Iterator[None]:
    """Kubernetes clients made in this process (the API app in tests) use the stack's cluster."""
    before = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = stack_env()["KUBECONFIG"]
    yield
    if before is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = before


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env(stack_env())


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url, max_connections=8)
    migrate(database)
    yield database
    database.close()


@pytest.fixture(scope="session")
def store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings)


@pytest.fixture(scope="session")
def ipfs(settings: Settings) -> Iterator[IpfsClient]:
    client = IpfsClient(settings.ipfs_api_url, token=settings.ipfs_api_token.value)
    yield client
    client.close()
