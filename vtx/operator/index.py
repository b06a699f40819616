"""What the operator knows of the cluster between API calls: its Jobs (kept current by a watch)
and the resources waiting for a slot under the cap. Reconciling a resource then costs no API
call unless something is to change, so a thousand waiting resources stay cheap.

Written from the event loop (watch events) and from handler threads: every access holds the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from vtx.operator.state import (
    POD_EXITED_OK,
    Waiting,
    is_indexed,
    is_running,
    slots_for,
    slots_held,
)

Key = tuple[str, str]  # (namespace, name)


def _owner(job: Mapping[str, Any]) -> str:
    for ref in job["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("name", ""))
    return ""


class ClusterView:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[Key, dict[str, Any]] = {}
        self._by_owner: dict[Key, set[str]] = {}
        self._waiting: dict[Key, Waiting] = {}
        self._probing: set[Key] = set()  # given a slot to be probed in, during their step
        self._exited_ok: set[Key] = set()  # Jobs one of whose pods exited 0 (ended for steps)

    # --- Jobs -------------------------------------------------------------------------------
    def put_job(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        """Keep ``job``; returns the version it replaces (None: a Job not seen before)."""
        meta = job["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            current = self._jobs.get(key)
            # A creation response may race a newer watch event: keep the newer.
            if current is not None and _version(current) > _version(job):
                return current
            self._jobs[key] = dict(job)
            self._by_owner.setdefault((key[0], _owner(job)), set()).add(key[1])
            return current

    def _seen(self, key: Key) -> dict[str, Any]:
        """The Job as kept, marked when its pod has exited 0 (read by ``state.job_obs``)."""
        job = self._jobs[key]
        return {**job, POD_EXITED_OK: True} if key in self._exited_ok else job

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            key = (namespace, name)
            return self._seen(key) if key in self._jobs else None

    def mark_pod_exited_ok(self, namespace: str, job: str) -> dict[str, Any] | None:
        """Mark ``job`` as one whose pod exited 0; returns the Job when this is news (it was
        kept, and running by its own conditions), None otherwise."""
        key = (namespace, job)
        with self._lock:
            current = self._jobs.get(key)
            if current is None or key in self._exited_ok or is_indexed(current):
                return None  # an Indexed Job (a split video's ranges) ends when all have
            self._exited_ok.add(key)
            return current if is_running(current) else None

    def ended_by_pod(self, namespace: str, name: str) -> bool:
        with self._lock:
            return (namespace, name) in self._exited_ok

    def drop_job(self, namespace: str, name: str) -> None:
        with self._lock:
            job = self._jobs.pop((namespace, name), None)
            self._exited_ok.discard((namespace, name))
            if job is not None:
                names = self._by_owner.get((namespace, _owner(job)))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._by_owner[(namespace, _owner(job))]

    def jobs_of(self, namespace: str, resource: str) -> dict[str, dict[str, Any]]:
        """The Jobs a resource owns, by name."""
        with self._lock:
            names = self._by_owner.get((namespace, resource), set())
            return {n: self._seen((namespace, n)) for n in names}

    def running_transcodes(self) -> int:
        """Transcode Jobs holding a slot of the cap: until the Job itself says it ended (a pod
        that has exited 0 keeps its slot until then, as it is still a pod on the node)."""
        with self._lock:
            return sum(slots_held(j) for j in self._jobs.values())

    # --- resources waiting for slots -----------------------------------------------------------
    def set_waiting(self, waiting: Waiting) -> None:
        with self._lock:
            key = (waiting.namespace, waiting.name)
            if waiting.missing > 0:
                self._waiting[key] = waiting
            else:
                self._waiting.pop(key, None)

    def is_waiting(self, namespace: str, name: str) -> bool:
        with self._lock:
            return (namespace, name) in self._waiting

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._waiting.pop((namespace, name), None)
            self._probing.discard((namespace, name))

    def queued(self) -> int:
        """Transcode Jobs waiting for a slot, over all resources."""
        with self._lock:
            return sum(w.missing for w in self._waiting.values())

    def first_waiting(self, cap: int) -> list[Key]:
        """The resources first in the queue whose missing Jobs the free slots under ``cap``
        would take (whom to step now that a slot is free)."""
        free = cap - self.running_transcodes()
        with self._lock:
            queue = sorted(self._waiting.values())
        chosen: list[Key] = []
        for w in queue:
            if free <= 0:
                break
            chosen.append((w.namespace, w.name))
            free -= w.missing
        return chosen

    def admit_probe(self, me: Waiting, cap: int) -> int:
        """1 when the unplanned ``me`` may be probed now: a slot under ``cap`` is free after the
        running Jobs, the resources being probed (each will want a slot) and the resources
        created earlier. The slot is held until :meth:`release_probe`, at the end of its step:
        resources created in the same second, whose order is by name, then cannot each see a
        slot free for the others."""
        key = (me.namespace, me.name)
        running = self.running_transcodes()
        with self._lock:
            self._waiting[key] = me
            if key in self._probing:
                return 1  # the slot it was given earlier in its step
            free = cap - running - len(self._probing - {key})
            ahead = sum(
                w.missing
                for k, w in self._waiting.items()
                if w < me and k != key and k not in self._probing
            )
            if free - ahead < 1:
                return 0
            self._probing.add(key)
            return 1

    def release_probe(self, namespace: str, name: str) -> None:
        with self._lock:
            self._probing.discard((namespace, name))

    def admit(self, me: Waiting, cap: int) -> int:
        """How many of its missing Jobs ``me`` may create now: the free slots under ``cap``,
        to resources created earlier first. Call under the operator's admission lock, and
        record the Jobs made (put_job) before the lock is released."""
        self.set_waiting(me)
        free = cap - self.running_transcodes()
        if free <= 0:
            return 0
        with self._lock:
            waiting = list(self._waiting.values())
        return slots_for(me, waiting, free)


def _version(obj: Mapping[str, Any]) -> int:
    raw = obj["metadata"].get("resourceVersion") or "0"
    return int(raw) if raw.isdigit() else 0
