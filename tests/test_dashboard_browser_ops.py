"""Operators, round 2, in a real browser (headless Chromium, Selenium; a worker process
and the dashboard process): step results and wait deadlines on the run page; a bulk retry
of 500 failed runs from the runs page with a confirmation; queue pause/resume and schedule
delete from the UI; the overview chart after a burst of completions and failures.
Screenshots (r2-*.png) go to tests/artifacts/ or $STACKSHIFT_TEST_SHOTS."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import spawn_worker, wait_for
from test_dashboard_browser import ARTIFACTS, CHROMIUM, DRIVER, browser, start_dashboard, until

from stackshift_redis import StackShift

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
__all__ = ["browser"]  # the fixture, shared
TARGET = "tests.apps.ops_jobs:app"


def shot(driver: Any, name: str) -> Path:
    """A full-page screenshot r2-<name>.png."""
    where = Path(os.environ.get("STACKSHIFT_TEST_SHOTS") or ARTIFACTS)
    where.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1360, 700)  # measure the page, not the last window
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1360, max(700, min(int(height) + 160, 3200)))
    path = where / f"r2-{name}.png"
    driver.save_screenshot(str(path))
    return path


async def _status(app: StackShift, run_id: str) -> str | None:
    return await app.run(run_id).status()


async def test_steps_waits_and_queue_and_schedule_buttons(
    app: StackShift, redis_url: str, is_cluster: bool, procs: list[Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    procs.append(spawn_worker(redis_url, app.namespace, target=TARGET))
    sleeper = await app.start("sign", queue_name="ops")
    payer = await app.start("pay", {"order_id": "o_77"}, queue_name="ops")
    for r in (sleeper, payer):
        await wait_for(lambda r=r: _is(app, r.id, "waiting"), 20)
    await app.schedules.create("nightly-report", job="burst", cron="0 3 * * *", payload={})
    dash, base = start_dashboard(redis_url, app.namespace, is_cluster)
    procs.append(dash)
    d = browser

    await asyncio.to_thread(d.get, f"{base}/runs/{sleeper.id}")
    await until(d, lambda d: d.find_element(By.ID, "steps"))
    steps = d.find_element(By.ID, "steps").text
    assert "sig-1" in steps and "report" in steps
    waits = d.find_element(By.ID, "waits").text
    assert "a timer (sleep)" in waits and re.search(r"until .* UTC \(in 1 h 59 m", waits), waits
    shot(d, "run-sleeping")
    d.find_element(By.CSS_SELECTOR, "#steps tr[data-step='report'] summary").click()
    assert '"rows"' in d.find_element(By.CSS_SELECTOR, "#steps tr[data-step='report'] pre").text
    shot(d, "run-step-expanded")

    await asyncio.to_thread(d.get, f"{base}/runs/{payer.id}")
    await until(d, lambda d: d.find_element(By.ID, "waits"))
    waits = d.find_element(By.ID, "waits").text
    assert "event payment.succeeded matching order_id" in waits, waits
    assert re.search(r"timeout at .* UTC \(in 59 m", waits), waits
    shot(d, "run-waiting-event")
    d.find_element(By.ID, "cancel-ask").click()  # a cancel asks first (no script needed)
    await until(d, lambda d: d.find_element(By.ID, "cancel").is_displayed())
    shot(d, "run-cancel-confirm")
    d.find_element(By.ID, "cancel").click()
    await until(d, lambda d: d.find_element(By.ID, "run-status").text == "cancelled")

    await asyncio.to_thread(d.get, base + "/")
    btn = "#queues tr[data-queue='ops'] button[data-queue-action]"
    await until(d, lambda d: d.find_element(By.CSS_SELECTOR, btn).text == "Pause")
    d.find_element(By.CSS_SELECTOR, btn).click()
    await until(d, lambda d: "queue ops: paused" in d.find_element(By.ID, "flash").text)
    await until(d, lambda d: d.find_element(By.CSS_SELECTOR, btn).text == "Resume")
    assert await app.pause_queue("ops") is False  # paused already
    shot(d, "queue-paused")
    d.find_element(By.CSS_SELECTOR, btn).click()
    await until(d, lambda d: "queue ops: resumed" in d.find_element(By.ID, "flash").text)
    assert await app.resume_queue("ops") is False  # resumed already

    await asyncio.to_thread(d.get, base + "/schedules")
    row = "td[data-schedule='nightly-report']"
    await until(
        d, lambda d: d.find_element(By.CSS_SELECTOR, f"{row} button[data-action='trigger']")
    )
    shot(d, "schedules")
    d.find_element(By.CSS_SELECTOR, f"{row} button[data-action='delete']").click()
    await until(d, lambda d: "Delete schedule nightly-report?" in d.page_source)
    shot(d, "schedule-delete-confirm")
    d.find_element(By.ID, "confirm").click()
    await until(
        d, lambda d: "schedule nightly-report: deleted" in d.find_element(By.ID, "flash").text
    )
    assert await app.schedules.get("nightly-report") is None
    shot(d, "schedule-deleted")

    await asyncio.to_thread(d.get, base + "/jobs")  # published definitions, live versions
    await until(d, lambda d: "sign" in d.find_element(By.TAG_NAME, "main").text)
    shot(d, "jobs")


async def _is(app: StackShift, run_id: str, status: str) -> bool:
    return await _status(app, run_id) == status


async def test_bulk_retry_of_500_failed_runs_and_the_chart(
    app: StackShift, redis_url: str, is_cluster: bool, procs: list[Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    procs.append(spawn_worker(redis_url, app.namespace, "-c", "50", target=TARGET))
    rows = await app.start_many(
        "import_row", [{"row": i} for i in range(500)], queue_name="imports"
    )
    burst = await app.start_many(
        "burst", [{"fail": i % 5 == 0} for i in range(120)], queue_name="ops"
    )

    async def failed() -> bool:
        return bool(await app._control.count_runs("retry", job="import_row") == 500)

    await wait_for(failed, 60)
    assert len(burst) == 120
    dash, base = start_dashboard(redis_url, app.namespace, is_cluster)
    procs.append(dash)
    d = browser

    await asyncio.to_thread(d.get, base + "/")
    await until(d, lambda d: d.find_element(By.CSS_SELECTOR, "svg.chart[data-queue='ops']"))

    def chart_counts(d: Any) -> tuple[int, int]:
        svg = d.find_element(By.CSS_SELECTOR, "svg.chart[data-queue='ops']")
        return int(svg.get_attribute("data-completed")), int(svg.get_attribute("data-failed"))

    await until(d, lambda d: chart_counts(d) == (96, 24), 30)
    bars = d.find_elements(By.CSS_SELECTOR, "svg.chart[data-queue='ops'] rect.bad")
    assert bars  # failures drawn in red
    shot(d, "overview-chart")

    await asyncio.to_thread(d.get, base + "/runs?job=import_row&status=failed")
    await until(d, lambda d: d.find_element(By.ID, "bulk-retry"))
    shot(d, "runs-filtered")
    d.find_element(By.ID, "bulk-retry").click()
    await until(d, lambda d: d.find_element(By.ID, "confirm-count"))
    assert d.find_element(By.ID, "confirm-count").get_attribute("data-count") == "500"
    assert "Retry 500 runs?" in d.find_element(By.TAG_NAME, "h1").text
    shot(d, "bulk-confirm")
    d.find_element(By.ID, "confirm").click()
    await until(d, lambda d: "500 run(s) retried" in d.find_element(By.ID, "flash").text)
    shot(d, "bulk-retried")

    async def completed() -> bool:
        return all([await _is(app, r.id, "completed") for r in rows[::50]]) and (
            await app._control.count_runs("retry", job="import_row") == 0
        )

    await wait_for(completed, 60)
    await asyncio.to_thread(d.get, base + "/")
    await until(d, lambda d: d.find_element(By.CSS_SELECTOR, "svg.chart[data-queue='imports']"))
    await until(
        d,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "svg.chart[data-queue='imports']").get_attribute(
                "data-completed"
            )
            == "500"
        ),
        30,
    )
    shot(d, "overview-after-retry")
