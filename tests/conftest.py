from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The stack restart check stops and starts every server: it runs after everything else.
    items.sort(key=lambda item: item.get_closest_marker("restarts_stack") is not None)
