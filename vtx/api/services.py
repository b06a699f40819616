"""The clients the API uses (SQL, S3, Kubernetes, Pulsar) and the threads that run their
blocking calls off the event loop."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pulsar

from vtx.core import bus
from vtx.core import resource as vt
from vtx.core.db import Cursor, Database
from vtx.core.objects import ObjectStore
from vtx.core.settings import Settings
from vtx.core.tokens import TokenEntry, parse_token_list

T = TypeVar("T")
log = logging.getLogger(__name__)
WORKERS = 12  # threads for blocking calls; the SQL pool has as many connections


@dataclass
class Services:
    settings: Settings
    db: Database
    store: ObjectStore
    custom: Any  # kubernetes.client.CustomObjectsApi
    pulsar: pulsar.Client
    executor: ThreadPoolExecutor
    tokens: tuple[TokenEntry, ...]

    @classmethod
    def connect(cls, settings: Settings) -> Services:
        from kubernetes import client

        from vtx.core.kube import load_kube_config

        load_kube_config()
        return cls(
            settings=settings,
            db=Database(settings.database_url, max_connections=WORKERS, application_name="vtx-api"),
            store=ObjectStore(settings),
            custom=client.CustomObjectsApi(),
            pulsar=bus.pulsar_client(settings),
            executor=ThreadPoolExecutor(WORKERS, thread_name_prefix="vtx-api"),
            tokens=parse_token_list(settings.api_tokens.value),
        )

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.pulsar.close()
        self.db.close()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call on the API's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def sql(self, work: Callable[[Cursor], T], name: str) -> T:
        """One retrying transaction, on the API's threads."""
        return await self.run(self.db.transaction, work, name=name)

    def create_resource(self, spec: vt.VideoTranscodeSpec) -> bool:
        """Create the video's VideoTranscode; False when it exists already (a repeat)."""
        from kubernetes.client.exceptions import ApiException

        body = vt.build_resource(spec, self.settings.namespace)
        try:
            self.custom.create_namespaced_custom_object(
                vt.GROUP, vt.VERSION, self.settings.namespace, vt.PLURAL, body,
                _request_timeout=self.settings.request_timeout_s,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete_resource(self, video_id: str) -> bool:
        """Delete the video's VideoTranscode; False when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(
                vt.GROUP, vt.VERSION, self.settings.namespace, vt.PLURAL,
                vt.resource_name(video_id), _request_timeout=self.settings.request_timeout_s,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
