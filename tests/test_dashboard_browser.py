"""The dashboard in a real browser (headless Chromium from Debian's packages, Selenium):
Redis, a worker process and the dashboard process; completed, failed and waiting runs;
the overview and runs pages; retry a failed run and watch it complete; send an event from
the page and watch the waiting run resume. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, spawn_worker, wait_for

from stackshift_redis import StackShift

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ARTIFACTS = ROOT / "tests" / "artifacts"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1360,1000", "--hide-scrollbars",
)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium driven by chromedriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ss-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def start_dashboard(redis_url: str, namespace: str, cluster: bool, *extra: str) -> tuple[Any, str]:
    """`stackshift dashboard` as a process on a free loopback port; returns (proc, base URL)."""
    port = _free_port()
    args = [sys.executable, "-m", "stackshift_redis._ops.cli", "--redis-url", redis_url,
            "--namespace", namespace, *(["--cluster"] if cluster else []),
            "dashboard", "--port", str(port), *extra]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the dashboard did not start listening")


def shot(driver: Any, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1360, max(700, min(int(height) + 160, 3200)))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


async def until(driver: Any, check: Any, timeout: float = 20) -> None:
    """Poll the page (off the event loop) until `check(driver)` is truthy."""

    def probe() -> bool:
        try:
            return bool(check(driver))
        except Exception:  # the element is being swapped by htmx: look again
            return False

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(probe):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"page never matched; now at {driver.current_url}")


async def test_operator_retries_a_failed_run_and_resumes_a_waiting_one(
    app: StackShift, redis_url: str, is_cluster: bool, procs: list[Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    procs.append(spawn_worker(redis_url, app.namespace, target="tests.apps.operator_jobs:app"))
    done = await app.start_many(
        "checkout", [{"sku": f"sku-{i}"} for i in range(3)], queue_name="shop"
    )
    flaky = await app.start("flaky", {"card": "visa-4242"}, queue_name="shop")
    waiting = await app.start("await_payment", {"order_id": "o_77"}, queue_name="shop")
    for r in done:
        await r.result(timeout=20)
    await wait_for(lambda: _is(flaky, "failed"), 20)
    await wait_for(lambda: _is(waiting, "waiting"), 20)
    dash, base = start_dashboard(redis_url, app.namespace, is_cluster)
    procs.append(dash)
    d = browser

    await asyncio.to_thread(d.get, base + "/")
    await until(d, lambda d: d.find_element(By.CSS_SELECTOR, "#queues tr[data-queue='shop']"))
    row = d.find_element(By.CSS_SELECTOR, "#queues tr[data-queue='shop']").text
    assert "shop" in row and "checkout" in row
    assert "alive" in d.find_element(By.ID, "workers").text
    shot(d, "overview")

    await asyncio.to_thread(d.get, base + "/runs")

    def statuses(d: Any) -> list[str]:
        rows = d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
        return sorted(r.get_attribute("data-status") for r in rows)

    await until(d, lambda d: statuses(d) == ["completed"] * 3 + ["failed", "waiting"])
    shot(d, "runs")

    d.find_element(By.CSS_SELECTOR, "#runs tr[data-status='failed'] a").click()
    await until(d, lambda d: d.find_element(By.ID, "run-status").text == "failed")
    assert "card declined" in d.page_source and "visa-4242" in d.page_source
    shot(d, "run-failed")
    d.find_element(By.ID, "retry").click()
    await until(d, lambda d: d.find_element(By.ID, "run-status").text == "completed")
    assert "paid on retry" in d.find_element(By.ID, "result").text
    shot(d, "run-retried")

    await asyncio.to_thread(d.get, base + "/events")
    await until(d, lambda d: waiting.id in d.find_element(By.ID, "waiting").text)
    shot(d, "events-waiting")
    d.find_element(By.ID, "event-name").send_keys("payment.succeeded")
    d.find_element(By.ID, "event-data").send_keys('{"order_id": "o_77", "amount": 12}')
    d.find_element(By.ID, "send-event").click()
    await until(d, lambda d: "resumed 1" in d.find_element(By.ID, "flash").text)
    assert await waiting.result(timeout=20) == {
        "paid": {"order_id": "o_77", "amount": 12},
        "status": "shipped",
    }
    await asyncio.to_thread(d.get, f"{base}/runs/{waiting.id}")
    await until(d, lambda d: d.find_element(By.ID, "run-status").text == "completed")
    await until(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".wf-row")) == 3)  # 3 steps
    shot(d, "run-resumed")

    await asyncio.to_thread(d.get, base + "/runs/0000000000000000deadbeef")
    await until(d, lambda d: "Run not found" in d.page_source)  # under load: let it render
    shot(d, "run-not-found")
    await asyncio.to_thread(d.get, base + "/events")
    d.find_element(By.ID, "event-name").send_keys("payment.succeeded")
    d.find_element(By.ID, "event-data").send_keys("{not json")
    d.find_element(By.ID, "send-event").click()
    await until(d, lambda d: "not valid JSON" in d.find_element(By.ID, "form-error").text)
    shot(d, "event-bad-json")


async def _is(run: Any, status: str) -> bool:
    return bool(await run.status() == status)


async def test_the_run_page_shows_a_runs_output_live(
    app: StackShift, redis_url: str, is_cluster: bool, procs: list[Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    procs.append(spawn_worker(redis_url, app.namespace, target="tests.apps.operator_jobs:app"))
    run = await app.start("narrate", {"id": "s1"}, queue_name="shop")
    await wait_for(lambda: _is(run, "waiting"), 20)
    dash, base = start_dashboard(redis_url, app.namespace, is_cluster)
    procs.append(dash)
    d = browser

    await asyncio.to_thread(d.get, f"{base}/runs/{run.id}")
    await until(d, lambda d: d.find_element(By.ID, "output-state").text == "live")
    assert d.find_elements(By.CSS_SELECTOR, "#output tbody tr") == []
    assert (await app.send_event("story.go", {"id": "s1"})).resumed == [run.id]
    # the messages arrive over ~3 s, while htmx refreshes the rest of the page every 2 s
    await until(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#output tbody tr")) >= 8)
    shot(d, "run-output-live")
    await until(d, lambda d: "ended" in d.find_element(By.ID, "output-state").text, 30)
    rows = d.find_elements(By.CSS_SELECTOR, "#output tbody tr")
    ids = [r.get_attribute("data-id") for r in rows]
    stored = [m.id async for m in run.stream()]
    assert ids == stored and len(ids) == 20  # all 20, in publish order, none twice
    texts = [r.find_elements(By.TAG_NAME, "td")[3].text for r in rows]
    assert [json.loads(t).get("line") or json.loads(t)["pct"] for t in texts] == [
        n if n % 5 else n * 5 for n in range(1, 21)
    ]
    assert d.find_element(By.ID, "output-count").text == "20"
    assert d.find_element(By.ID, "output-state").text == "ended: the run is completed"
    await until(d, lambda d: d.find_element(By.ID, "run-status").text == "completed")
    shot(d, "run-output")
