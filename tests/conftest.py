"""Suite-wide guard: the API token appears in no captured stdout, stderr or log output."""

from __future__ import annotations

import pytest

from tap_custobar import page_writer
from tests.leaks import TEST_TOKEN, scanned


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--page-path",
        choices=("on", "off"),
        default="on",
        help="off: in-process syncs run as on a singer-sdk version the page-at-a-time record "
        "path was not verified against, i.e. every record takes the SDK's standard path",
    )


@pytest.fixture(autouse=True)
def page_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    setting = request.config.getoption("--page-path")
    if setting == "off":
        monkeypatch.setattr(page_writer, "VERIFIED_SDK_VERSIONS", frozenset())
    return str(setting)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    texts = [content for _, content in report.sections]
    if report.longrepr is not None:
        texts.append(str(report.longrepr))
    scanned["texts"] += len(texts)
    scanned["chars"] += sum(len(text) for text in texts)
    if any(TEST_TOKEN in text for text in texts):
        scanned["found"] = scanned.get("found", 0) + 1
        report.outcome = "failed"
        where = [name for name, content in report.sections if TEST_TOKEN in content]
        original = str(report.longrepr or "").replace(TEST_TOKEN, "<API TOKEN>")
        report.sections = [
            (name, content.replace(TEST_TOKEN, "<API TOKEN>")) for name, content in report.sections
        ]
        report.longrepr = (
            f"{item.nodeid}: the API token appeared in captured output {where or '(traceback)'}"
            f"\n{original}"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(
        f"token scan: {scanned['texts']} captured texts, {scanned['chars']} characters, "
        f"{scanned.get('found', 0)} containing the API token"
    )


@pytest.fixture(scope="session")
def dataset():
    from tests.sandbox import generate_dataset

    return generate_dataset(customers=250, products=60, sales=150, events_per_type=120, seed=1)


@pytest.fixture
def sandbox(dataset):
    from tests.sandbox import Sandbox

    with Sandbox(dataset=dataset, token=TEST_TOKEN) as server:
        yield server
