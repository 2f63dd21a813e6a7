"""Panels' meeting schedules can be tuned one field at a time from the environment."""

from __future__ import annotations

import pytest

from services.panels.settings import PanelsSettings


def test_one_schedule_field_can_be_set_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANELS_CCP__CUT_OFF_DAYS", "3")
    monkeypatch.setenv("PANELS_VCSP__INTERVAL_DAYS", "21")
    settings = PanelsSettings()
    assert (settings.ccp.kind, settings.ccp.cut_off_days, settings.ccp.week_of_month) == ("monthly", 3, 2)
    assert (settings.vcsp.kind, settings.vcsp.interval_days, settings.vcsp.cut_off_days) == ("every-n-days", 21, 5)
