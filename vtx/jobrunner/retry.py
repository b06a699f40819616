"""Retrying calls to storage while it is briefly unreachable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class StorageUnavailable(RuntimeError):
    """Storage stayed unreachable for longer than the retry budget."""


def with_retry(
    call: Callable[[], T],
    what: str,
    *,
    budget_s: float,
    first_delay_s: float = 0.5,
    max_delay_s: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``call`` until it succeeds, backing off exponentially, for at most ``budget_s``."""
    deadline = clock() + budget_s
    delay = first_delay_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            if clock() + delay > deadline:
                raise StorageUnavailable(
                    f"{what} failed for {budget_s:.0f}s ({attempt} attempts): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            log.warning("%s failed (attempt %d), retrying in %.1fs: %s", what, attempt, delay, exc)
            sleep(delay)
            delay = min(max_delay_s, delay * 2)
