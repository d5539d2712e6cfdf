"""What the operations tests measured, printed at the end of every run (not only with -s)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

MEASURED: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    """Record one line for the run's summary (e.g. the unit's exposure score)."""
    return MEASURED.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("operations: measured")
        for line in MEASURED:
            terminalreporter.write_line(line)
