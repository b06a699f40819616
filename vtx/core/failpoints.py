"""Named points in the operator and the jobrunner where a fault test makes the process fail on
purpose, so that a crash lands in the window the test means (after the probe, between two
writes, mid-publish) rather than wherever a timer happens to fire.

Inert unless ``VTX_FAILPOINTS`` names a point: ``name=action[,name=action...]`` where the action
is ``kill`` (the process SIGKILLs itself: a crash, nothing cleaned up), ``pause`` (the calling
thread stops there for good, after a log line, until something outside ends the process) or
``delay:<seconds>`` (the calling thread waits that long, the first time only, and goes on: the
test takes a server away meanwhile, so that the step after the point meets the outage). An
unknown point or action is refused at start, so that a misspelt test cannot pass unarmed."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)
ENV = "VTX_FAILPOINTS"
ACTIONS = ("kill", "pause", "delay:<seconds>")
MAX_DELAY_S = 600

POINTS = {
    "operator.probing": "the resource is read; the probe has not started",
    "operator.probed": "the probe has answered; the plan is not written yet",
    "operator.jobs-created": "the Jobs are created; the status that follows is not written",
    "operator.publishing": "the outputs check out; publishing has written nothing yet",
    "operator.master-written": "publish: the master playlist is in S3; no IPFS root yet",
    "operator.ready-written": "the status says Ready; the row and its phase event are not written",
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
        if action not in ("kill", "pause") and delay_of(action) is None:
            raise FailpointError(f"{ENV}: {name} wants {action!r}; actions: {', '.join(ACTIONS)}")
        armed[name] = action
    return armed


def delay_of(action: str) -> float | None:
    """The seconds of a ``delay:<seconds>`` action (1 to MAX_DELAY_S), else None."""
    kind, _, seconds = action.partition(":")
    if kind != "delay" or not seconds.isdigit() or not 1 <= int(seconds) <= MAX_DELAY_S:
        return None
    return float(seconds)


_armed: dict[str, str] = {}
_lock = threading.Lock()


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
    delay = delay_of(action)
    if delay is None:
        threading.Event().wait()
        return
    with _lock:
        if _armed.pop(name, None) is None:
            return  # another thread took this delay
    time.sleep(delay)
