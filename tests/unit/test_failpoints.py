from __future__ import annotations

import pytest

from vtx.core import failpoints


def test_points_and_actions_are_read() -> None:
    armed = failpoints.parse("operator.probed=kill, jobrunner.recorded=pause,")
    assert armed == {"operator.probed": "kill", "jobrunner.recorded": "pause"}
    assert failpoints.parse("") == {}
    assert failpoints.parse("operator.publishing=delay:20") == {"operator.publishing": "delay:20"}


@pytest.mark.parametrize(
    ("text", "named"),
    [("operator.probd=kill", "no failpoint 'operator.probd'"),
     ("operator.probed=crash", "wants 'crash'"), ("operator.probed", "wants ''"),
     ("operator.probed=delay", "wants 'delay'"), ("operator.probed=delay:0", "wants 'delay:0'"),
     ("operator.probed=delay:601", "wants 'delay:601'"), ("operator.probed=delay:-3", "wants")],
)  # fmt: skip
def test_a_misspelt_failpoint_is_refused(text: str, named: str) -> None:
    with pytest.raises(failpoints.FailpointError, match=named):
        failpoints.parse(text)


def test_an_unarmed_point_does_nothing() -> None:
    failpoints.arm({})
    failpoints.hit("operator.probed")


def test_a_delay_holds_the_first_caller_only(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("vtx.core.failpoints.time.sleep", slept.append)
    failpoints.arm({failpoints.ENV: "operator.probing=delay:7"})
    failpoints.hit("operator.probing")
    failpoints.hit("operator.probing")
    assert slept == [7.0]
