"""The rule that chooses whether a video's renditions share one Job (vtx/operator/grouping.py)."""

from __future__ import annotations

from typing import Any

import pytest

from vtx.operator.grouping import Capacity, Nodes, choose, cpu_millis, schedulable_nodes


def cap(nodes: int | None, mcpu: int = 8000, running: int = 0, queued: int = 0) -> Capacity:
    return Capacity(
        nodes=None if nodes is None else Nodes(nodes, mcpu),
        running_jobs=running,
        queued_jobs=queued,
        max_running_jobs=4,
        job_cpu_request_mcpu=500,
    )


@pytest.mark.parametrize(
    ("forced", "renditions", "capacity", "grouped", "reason"),
    [
        (True, 3, cap(4), True, "Spec"),
        (False, 3, cap(1), False, "Spec"),
        (None, 1, cap(1), False, "OneRendition"),
        (None, 3, None, True, "NodesUnknown"),
        (None, 3, cap(None), True, "NodesUnknown"),
        (None, 3, cap(1, mcpu=64000), True, "OneNode"),
        (None, 3, cap(0), True, "OneNode"),
        (None, 3, cap(2), False, "Spread"),
        # The cap of 4: two running leave two slots for three Jobs.
        (None, 3, cap(2, running=2), True, "NoRoom"),
        # Queued Jobs of other videos come first.
        (None, 3, cap(3, queued=2), True, "NoRoom"),
        # 1.2 CPU allocatable is not 3 times 500m.
        (None, 3, cap(2, mcpu=1200), True, "NoRoom"),
        # 2 CPU less one running Job's 500m leaves 1.5: just enough for three.
        (None, 3, cap(2, mcpu=2000, running=1), False, "Spread"),
    ],
)
def test_the_rule(
    forced: bool | None, renditions: int, capacity: Capacity | None, grouped: bool, reason: str
) -> None:
    g = choose(forced, renditions, capacity)
    assert (g.grouped, g.reason) == (grouped, reason)
    assert g.message


def test_the_messages_say_what_was_seen() -> None:
    assert choose(None, 3, cap(1)).message == (
        "1 schedulable node: one Job decodes the source once for all 3 renditions, where a Job "
        "per rendition would decode it 3 times on the same CPUs"
    )
    assert choose(None, 3, cap(2, mcpu=1200)).message == (
        "4 free slots and 1.2 free CPU, 3 Jobs would need 3 slots and 1.5 CPU: one Job decodes "
        "the source once for all 3 renditions"
    )
    assert choose(None, 3, cap(3)).message == (
        "3 schedulable nodes with 4 free slots and 8 free CPU: one Job per rendition runs the 3 "
        "renditions side by side"
    )


@pytest.mark.parametrize(
    ("quantity", "mcpu"), [("2", 2000), ("1900m", 1900), ("0.5", 500), ("250m", 250), ("16", 16000)]
)
def test_cpu_quantities(quantity: str, mcpu: int) -> None:
    assert cpu_millis(quantity) == mcpu


@pytest.mark.parametrize("bad", ["", "2Gi", "-1", "1e3", "m", "two"])
def test_other_quantities_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a CPU quantity"):
        cpu_millis(bad)


def node(cpu: str = "2", ready: str = "True", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "n"},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": ready},
            ],
        },
    }


def test_only_nodes_a_job_may_land_on_count() -> None:
    nodes = [
        node("2"),
        node("1900m"),
        node("4", ready="False"),
        node("4", ready="Unknown"),
        node("8", unschedulable=True),
        node("8", taints=[{"key": "k", "effect": "NoSchedule"}]),
        node("8", taints=[{"key": "k", "effect": "NoExecute"}]),
        node("1", taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
        node("lots"),
    ]
    assert schedulable_nodes(nodes) == Nodes(count=3, allocatable_mcpu=4900)
    assert schedulable_nodes([]) == Nodes(0, 0)
