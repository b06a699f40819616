"""Whether a video's renditions share one Job or get one Job each (pure).

One Job per rendition decodes the source once per rendition. That buys time only when the Jobs
run side by side on CPUs of their own, which means on more than one node: on a single node the
grouped Job's one FFmpeg already uses every core it is given, and each extra decode is work the
grouped Job does not do. So the rule, decided once per video when its ladder is planned:

1. ``spec.groupRenditions`` set: as it says.
2. One rendition: one Job either way (named per rendition).
3. The nodes could not be read: grouped (it never costs more CPU).
4. Fewer than two schedulable nodes: grouped.
5. Not room for every rendition's Job now (slots of the cap left after the running and the
   queued Jobs, or allocatable CPU left after the running Jobs' requests): grouped, so the video
   takes one slot and decodes once while others wait.
6. Otherwise one Job per rendition: the renditions run side by side on different nodes and the
   video is Ready when its largest rendition is, at the price of one decode per rendition.

The choice and its reason are kept in ``status.grouping``; the running Jobs of a video never
change shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vtx.core import ranges
from vtx.core.resource import Grouping


@dataclass(frozen=True)
class Nodes:
    """The schedulable nodes: how many, and their allocatable CPU (millicores)."""

    count: int
    allocatable_mcpu: int


@dataclass(frozen=True)
class Capacity:
    """What the operator sees of the cluster when it plans a video."""

    nodes: Nodes | None  # None: they could not be read
    running_jobs: int  # transcode Jobs running now
    queued_jobs: int  # transcode Jobs waiting for a slot
    max_running_jobs: int  # the cap
    job_cpu_request_mcpu: int  # what each transcode Job requests


def choose(forced: bool | None, renditions: int, capacity: Capacity | None) -> Grouping:
    if forced is not None:
        how = "one Job for all renditions" if forced else "one Job per rendition"
        return Grouping(forced, "Spec", f"spec.groupRenditions is {str(forced).lower()}: {how}")
    if renditions <= 1:
        return Grouping(False, "OneRendition", "one rendition: one Job")
    nodes = capacity.nodes if capacity is not None else None
    once = f"one Job decodes the source once for all {renditions} renditions"
    if capacity is None or nodes is None:
        return Grouping(True, "NodesUnknown", f"the nodes could not be read: {once}")
    if nodes.count < 2:
        return Grouping(
            True,
            "OneNode",
            f"{_count(nodes.count, 'schedulable node')}: {once}, where a Job per rendition "
            f"would decode it {renditions} times on the same CPUs",
        )
    slots, free_mcpu = _room(capacity, nodes)
    needed_mcpu = renditions * capacity.job_cpu_request_mcpu
    room = f"{max(slots, 0)} free slots and {_cpus(max(free_mcpu, 0))} free CPU"
    if slots < renditions or free_mcpu < needed_mcpu:
        return Grouping(
            True,
            "NoRoom",
            f"{room}, {renditions} Jobs would need {renditions} slots and {_cpus(needed_mcpu)} "
            f"CPU: {once}",
        )
    return Grouping(
        False,
        "Spread",
        f"{nodes.count} schedulable nodes with {room}: one Job per rendition runs the "
        f"{renditions} renditions side by side",
    )


def split(
    duration_s: float,
    capacity: Capacity | None,
    *,
    split_s: float,
    cap: int,
    min_range_s: float,
) -> Grouping | None:
    """A split in time ranges for a source longer than ``split_s`` (vtx.core.ranges), when the
    cluster has room to run ranges side by side: two schedulable nodes or more (on one, the
    single Job's FFmpeg already uses every core), and as many ranges as there are spare slots
    and CPU for, at most ``cap``, none shorter than ``min_range_s``. None: no split."""
    if split_s <= 0 or duration_s <= split_s or capacity is None or capacity.nodes is None:
        return None
    nodes = capacity.nodes
    if nodes.count < 2:
        return None
    slots, free_mcpu = _room(capacity, nodes)
    spare = min(slots, free_mcpu // max(1, capacity.job_cpu_request_mcpu))
    count = ranges.range_count(
        duration_s, slots=spare, cap=cap, split_s=split_s, min_range_s=min_range_s
    )
    if count < 2:
        return None
    bounds = ranges.split(duration_s, count)
    return Grouping(
        True,
        "Split",
        f"{duration_s:.0f}s is longer than {split_s:g}s and {nodes.count} schedulable nodes have "
        f"room for {spare} Jobs: {len(bounds) - 1} ranges of about "
        f"{duration_s / (len(bounds) - 1):.0f}s encoded side by side, the sound once",
        range_bounds=bounds,
    )


def _room(capacity: Capacity, nodes: Nodes) -> tuple[int, int]:
    """The slots of the cap left after the running and queued Jobs, and the allocatable CPU
    (millicores) left after the running Jobs' requests."""
    slots = capacity.max_running_jobs - capacity.running_jobs - capacity.queued_jobs
    free_mcpu = nodes.allocatable_mcpu - capacity.running_jobs * capacity.job_cpu_request_mcpu
    return slots, free_mcpu


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _cpus(mcpu: int) -> str:
    return f"{mcpu / 1000:g}"


_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")


def cpu_millis(quantity: str) -> int:
    """A Kubernetes CPU quantity ("2", "1900m", "0.5") in millicores; ValueError otherwise."""
    match = _CPU.match(quantity.strip())
    if match is None:
        raise ValueError(f"not a CPU quantity: {quantity[:40]!r}")
    number, milli = match.groups()
    return int(float(number)) if milli else int(float(number) * 1000)


def node_ready(node: Mapping[str, Any] | None) -> bool:
    """Whether the node's ``Ready`` condition is ``True`` (False for a node that is gone)."""
    if node is None:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def schedulable_nodes(nodes: Iterable[Mapping[str, Any]]) -> Nodes:
    """The nodes a transcode Job may land on (Ready, not cordoned, no NoSchedule or NoExecute
    taint: vtx's Jobs tolerate none but a lost node's, and those for a short while), from Node
    objects as the API returns them."""
    count = mcpu = 0
    for node in nodes:
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        if spec.get("unschedulable"):
            continue
        if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or []):
            continue
        if not node_ready(node):
            continue
        try:
            cpu = cpu_millis(str((status.get("allocatable") or {}).get("cpu", "0")))
        except ValueError:
            continue
        count += 1
        mcpu += cpu
    return Nodes(count, mcpu)
