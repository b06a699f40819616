"""The dashboard in Debian's Chromium, driven by Playwright, against `vtx api` and `vtx operator`
started as host processes on the local stack (no browser download, no server stand-ins)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tests.services import Process, api_process, free_port, operator_process
from tests.stack import REPO, job_namespace, stack_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MIB = 1024 * 1024
MULTIPART_THRESHOLD = 8 * MIB  # larger files go up in parts
PART_SIZE = 5 * MIB  # S3's smallest part
ARTIFACTS = REPO / "build" / "artifacts"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@dataclass(frozen=True)
class Servers:
    api: Process
    operator: Process
    namespace: str

    def tails(self) -> str:
        return (
            f"--- vtx api ({self.api.log}) ---\n{self.api.tail()}\n"
            f"--- vtx operator ({self.operator.log}) ---\n{self.operator.tail()}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


# Module scope: the servers and Playwright's event loop (which the sync API keeps running on this
# thread) are gone before any other module's tests, whose asyncio loops they would block.
@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    logs = tmp_path_factory.mktemp("servers")
    with job_namespace("vtx-test-browser") as ns:
        operator = operator_process(
            logs / "operator.log", ns, health_port=free_port(), metrics_port=free_port()
        )
        api = api_process(
            logs / "api.log", ns,
            env={
                "VTX_MULTIPART_THRESHOLD": str(MULTIPART_THRESHOLD),
                "VTX_UPLOAD_PART_SIZE": str(PART_SIZE),
                # Where the browser reaches storage (the stack's default, stated here because
                # every upload and segment URL the page uses depends on it).
                "VTX_S3_PUBLIC_ENDPOINT": "http://127.0.0.1:7070",
                # The tests' webhook receiver listens on this machine.
                "VTX_WEBHOOK_ALLOW_PRIVATE": "true",
            },
        )  # fmt: skip
        try:
            operator.start()
            api.start()
            yield Servers(api, operator, ns)
        finally:
            api.stop()
            operator.stop()


@pytest.fixture(scope="session")
def token() -> str:
    return stack_env()["VTX_API_TOKEN"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def page(browser: Browser, servers: Servers, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser profile on the dashboard's origin; uncaught page errors fail the test,
    and a failed test prints the console and the tails of the servers' logs."""
    context = browser.new_context(viewport=DESKTOP, base_url=servers.api.url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    # File choosers are intercepted from the start: Playwright turns interception on lazily,
    # when a test starts waiting for one, without waiting for the browser to confirm it, so a
    # key press sent right after could open a chooser nobody intercepts.
    page.on("filechooser", lambda _chooser: None)
    uncaught: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: uncaught.append(f"{exc.name}: {exc.message}\n{exc.stack}"))
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    try:
        yield page
    finally:
        context.close()
        reports = request.node.stash.get(REPORTS, {})
        if any(r.failed for r in reports.values()):
            print("--- browser console ---", *console[-60:], sep="\n")
            print(servers.tails())
    assert not uncaught, "uncaught errors in the page:\n" + "\n".join(uncaught)
