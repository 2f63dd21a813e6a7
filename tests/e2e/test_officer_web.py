"""The officer pages in a real browser: headless Chromium from Debian's packages, driven by Selenium,
against the four services as processes on a real broker. Loads each page, acknowledges an overdue
police alert with the keyboard through the form (no JavaScript on the pages), sees it leave the
overdue list, and keeps a full-page screenshot of each page under test-artifacts/screenshots/.

High-risk alerts are given no time to be acknowledged (NOTIFICATIONS_ACK_DEADLINE_MINUTES), so
they are overdue as soon as they are stored; panels' clock is fixed so the referrals land on the
next CCP and VCSP agendas.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from demo.pipeline import REPO, Pipeline

from ..conftest import wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
PANELS_TODAY = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # before both next meetings' cut-offs
OFFICER = "PC Morgan Ellis 4471"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    pipe = Pipeline(
        tmp_path_factory.mktemp("officer"),
        kafka_bootstrap,
        namespace=f"e2e{uuid.uuid4().hex[:8]}.",
        extra_env={
            "NOTIFICATIONS_ACK_DEADLINE_MINUTES": '{"high": 0}',
            "NOTIFICATIONS_ESCALATION_CHECK_SECONDS": "1",
            "NOTIFICATIONS_BRIEFING_TIMEZONE": "UTC",
            "PANELS_CLOCK_FIXED_AT": PANELS_TODAY.isoformat(),
        },
    )
    try:
        pipe.start()
        yield pipe
    finally:
        pipe.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"headless Chromium is needed for the officer web test but {', '.join(missing)} is missing: "
            "install Debian's packages with `apt-get install -y chromium chromium-driver`",
            pytrace=False,
        )
    profile = tempfile.mkdtemp(prefix="dcsp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1366,900",
        "--lang=en-GB",
    ):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: WebDriver, name: str) -> Path:
    """A full-page PNG: the viewport is stretched to the page's height while it is taken."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1366, "height": min(height, 8000), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    path = SCREENSHOTS / f"{name}.png"
    try:
        assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert path.stat().st_size > 10_000
    return path


def submit(pipeline: Pipeline, **overrides: Any) -> str:
    body: dict[str, Any] = {
        "partner": "police",
        "idempotency_key": f"web-{uuid.uuid4()}",
        "reported_at": datetime.now(UTC).isoformat(),
        "location": {"address": "12 Canal Walk, Riverside Estate", "uprn": "100023336800"},
        "description": "Loud music and shouting until 3am",
        **overrides,
    }
    r = httpx.post(pipeline.url("intake") + "/v1/reports", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


def api(pipeline: Pipeline, service: str, path: str, **params: str) -> Any:
    r = httpx.get(pipeline.url(service) + path, params=params, timeout=10)
    r.raise_for_status()
    return r.json()


def alert_for(pipeline: Pipeline, incident_id: str) -> dict[str, Any] | None:
    found = api(pipeline, "notifications", "/v1/alerts", incident_id=incident_id)
    return found[0] if found else None


def rows(driver: WebDriver, table_id: str) -> list[str]:
    tables = driver.find_elements(By.CSS_SELECTOR, f"table#{table_id}")
    return (
        [row.get_attribute("id") or "" for row in tables[0].find_elements(By.CSS_SELECTOR, "tbody tr")]
        if tables
        else []
    )


@pytest.fixture(scope="module")
def cases(pipeline: Pipeline) -> dict[str, Any]:
    """A high-risk assault on a vulnerable victim (overdue alert, VCSP referral), a lower-risk crime
    (alert not yet due) and a council tenant with a possession notice (CCP referral)."""
    victim = {
        "name": f"Vera {uuid.uuid4().hex[:4]}",
        "date_of_birth": "1944-01-01",
        "vulnerabilities": ["disability", "mental-health", "lives-alone"],
    }
    assault = submit(pipeline, victim=victim, description="She was punched and kicked on the landing")
    damage = submit(pipeline, partner="housing", description="Car windows smashed in the car park last night")
    tenant = f"Tomas {uuid.uuid4().hex[:4]}"
    tenancy = {
        "tenure": "council",
        "tenancy_ref": f"T-{uuid.uuid4().hex[:8]}",
        "tenant_role": "perpetrator",
        "tenant": {"name": tenant, "date_of_birth": "1983-06-01"},
        "possession": {"notice_of_seeking_possession": True},
    }
    ccp_case = submit(pipeline, partner="housing", tenancy=tenancy, description="Drug dealing from flat 4, daily")
    overdue = wait_for(lambda: alert_for(pipeline, assault), 60, "the assault's police alert")
    later = wait_for(lambda: alert_for(pipeline, damage), 60, "the criminal damage's police alert")
    wait_for(lambda: api(pipeline, "panels", "/v1/referrals", panel="ccp"), 60, "the CCP referral")
    wait_for(lambda: api(pipeline, "panels", "/v1/referrals", panel="vcsp"), 60, "the VCSP referral")
    return {
        "overdue_alert": overdue["alert_id"],
        "later_alert": later["alert_id"],
        "assault": assault,
        "ccp_case": ccp_case,
        "victim": victim["name"],
        "tenant": tenant,
    }


def test_an_officer_acknowledges_an_overdue_alert_and_it_leaves_the_overdue_list(
    pipeline: Pipeline, browser: WebDriver, cases: dict[str, Any]
) -> None:
    overdue_row, later_row = f"alert-{cases['overdue_alert']}", f"alert-{cases['later_alert']}"
    base = pipeline.url("notifications")
    browser.get(base + "/officer/alerts")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Police alerts awaiting acknowledgement"
    assert browser.find_elements(By.TAG_NAME, "main")
    assert "<script" not in browser.page_source.lower()
    assert overdue_row in rows(browser, "overdue-alerts")
    assert later_row in rows(browser, "awaiting-alerts")
    caption = browser.find_element(By.CSS_SELECTOR, "#overdue-alerts caption").text
    assert caption.startswith("Overdue: deadline passed, not acknowledged")
    screenshot(browser, "officer-alerts")

    # Keyboard only: type the name into the labelled field and press Enter to submit the form.
    field = browser.find_element(By.ID, f"by-{cases['overdue_alert']}")
    label = browser.find_element(By.CSS_SELECTOR, f"label[for='by-{cases['overdue_alert']}']")
    assert label.text.startswith("Officer name")
    field.send_keys(OFFICER)
    assert browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle") == "solid"
    field.send_keys(Keys.ENTER)

    wait_for(lambda: "acknowledged=" in browser.current_url, 20, "the redirect back to the list")
    notice = browser.find_element(By.ID, "acknowledged").text
    assert OFFICER in notice and cases["overdue_alert"][:8] in notice
    assert overdue_row not in rows(browser, "overdue-alerts")
    assert later_row in rows(browser, "awaiting-alerts")
    stored = api(pipeline, "notifications", f"/v1/alerts/{cases['overdue_alert']}")
    assert stored["acknowledged_by"] == OFFICER and stored["status"] == "acknowledged"
    screenshot(browser, "officer-alerts-acknowledged")


def test_the_form_refuses_a_blank_name_and_an_unknown_alert_without_acknowledging(
    pipeline: Pipeline, cases: dict[str, Any]
) -> None:
    base = pipeline.url("notifications")
    form = {"content-type": "application/x-www-form-urlencoded"}
    blank = httpx.post(
        f"{base}/officer/alerts/{cases['later_alert']}/ack", content="acknowledged_by=+++", headers=form, timeout=10
    )
    assert blank.status_code == 422
    assert "Enter the name of the officer acknowledging the alert" in blank.text
    assert 'aria-invalid="true"' in blank.text
    assert api(pipeline, "notifications", f"/v1/alerts/{cases['later_alert']}")["acknowledged_at"] is None
    unknown = httpx.post(
        f"{base}/officer/alerts/{uuid.uuid4()}/ack", content="acknowledged_by=PC+Lee", headers=form, timeout=10
    )
    assert unknown.status_code == 404
    assert "There is no police alert" in unknown.text


def test_the_next_ccp_and_vcsp_agendas_show_each_referral_with_its_pack(
    pipeline: Pipeline, browser: WebDriver, cases: dict[str, Any]
) -> None:
    browser.get(pipeline.url("panels") + "/officer/agendas")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Next panel agendas"
    ccp = browser.find_element(By.ID, "ccp-agenda")
    vcsp = browser.find_element(By.ID, "vcsp-agenda")
    assert "Agenda for 2026-03-10" in ccp.find_element(By.TAG_NAME, "caption").text
    assert "Agenda for 2026-03-17" in vcsp.find_element(By.TAG_NAME, "caption").text
    assert cases["tenant"] in ccp.text and "notice-of-seeking-possession" in ccp.text
    assert cases["victim"] in vcsp.text and "violent-crime" in vcsp.text
    assert browser.find_elements(By.CSS_SELECTOR, "#vcsp-agenda th[scope='row']")
    screenshot(browser, "officer-agendas")


def test_todays_daily_briefing_lists_the_new_cases(
    pipeline: Pipeline, browser: WebDriver, cases: dict[str, Any]
) -> None:
    # The briefing's cut-off is a setting: moved to just after the reports were triaged, today's
    # briefing is due now and covers them.
    cut_off = datetime.now(UTC) + timedelta(seconds=1)
    pipeline.processes["notifications"].env["NOTIFICATIONS_BRIEFING_TIME"] = cut_off.strftime("%H:%M:%S")
    pipeline.restart("notifications")
    wait_for(lambda: datetime.now(UTC) > cut_off, 5, "the cut-off to pass")

    browser.get(pipeline.url("notifications") + "/officer/briefing")
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading == "Community Safety Partnership - Daily Briefing"
    assert f"Date: {cut_off.date().isoformat()}" in browser.find_element(By.TAG_NAME, "main").text
    new_issues = browser.find_element(By.ID, "new_issues_of_concern").text
    assert cases["assault"] in new_issues
    assert browser.find_element(By.CSS_SELECTOR, "label[for='date']").text == "Briefing date"
    screenshot(browser, "officer-briefing")
