"""Named points in the operator and the jobrunner where a fault test makes the process fail on
purpose, so that a crash lands in the window the test means (after the probe, between two
writes, mid-publish) rather than wherever a timer happens to fire.

Inert unless ``VTX_FAILPOINTS`` names a point: ``name=action[,name=action...]`` where the action
is ``kill`` (the process SIGKILLs itself: a crash, nothing cleaned up) or ``pause`` (the calling
thread stops there for good, after a log line, until something outside ends the process). An
unknown point or action is refused at start, so that a misspelt test cannot pass unarmed."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)
ENV = "VTX_FAILPOINTS"
ACTIONS = ("kill", "pause")

POINTS = {
    "operator.probed": "the probe has answered; the plan is not written yet",
    "operator.jobs-created": "the Jobs are created; the status that follows is not written",
    "operator.master-written": "publish: the master playlist is in S3; no IPFS root yet",
    "operator.outputs-removed": "deletion: the objects are gone; the rows and the pin remain",
    "jobrunner.last-segment": "the encode has ended; its last segment is not uploaded",
    "jobrunner.recorded": "every output is uploaded and recorded; the last report is not sent",
}


class FailpointError(ValueError):
    """``VTX_FAILPOINTS`` names a point or action that does not exist."""


def parse(text: str) -> dict[str, str]:
    armed: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, action = item.partition("=")
        if name not in POINTS:
            raise FailpointError(f"{ENV}: no failpoint {name!r} (known: {', '.join(POINTS)})")
        if action not in ACTIONS:
            raise FailpointError(f"{ENV}: {name} wants {action!r}; actions: {', '.join(ACTIONS)}")
        armed[name] = action
    return armed


_armed: dict[str, str] = {}


def arm(env: Mapping[str, str] = os.environ) -> None:
    """Read ``VTX_FAILPOINTS`` (at start: a bad value stops the process before it does work)."""
    _armed.clear()
    _armed.update(parse(env.get(ENV, "")))
    for name, action in _armed.items():
        log.warning("failpoint %s armed: %s (%s)", name, action, POINTS[name])


def hit(name: str) -> None:
    """The process reached ``name``: carry out its action, if one is armed."""
    assert name in POINTS, name
    action = _armed.get(name)
    if action is None:
        return
    log.warning("failpoint %s: %s", name, action)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Event().wait()
