from __future__ import annotations

import pytest

from vtx.core import failpoints


def test_points_and_actions_are_read() -> None:
    armed = failpoints.parse("operator.probed=kill, jobrunner.recorded=pause,")
    assert armed == {"operator.probed": "kill", "jobrunner.recorded": "pause"}
    assert failpoints.parse("") == {}


@pytest.mark.parametrize(
    ("text", "named"),
    [("operator.probd=kill", "no failpoint 'operator.probd'"),
     ("operator.probed=crash", "wants 'crash'"), ("operator.probed", "wants ''")],
)  # fmt: skip
def test_a_misspelt_failpoint_is_refused(text: str, named: str) -> None:
    with pytest.raises(failpoints.FailpointError, match=named):
        failpoints.parse(text)


def test_an_unarmed_point_does_nothing() -> None:
    failpoints.arm({})
    failpoints.hit("operator.probed")
