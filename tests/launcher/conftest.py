"""The launcher tests' start services leave soon after their last kernel (a user's wait ten
minutes), so a test run leaves none behind for long."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def short_lived_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCONTAINERS_LAUNCH_IDLE", "30")
