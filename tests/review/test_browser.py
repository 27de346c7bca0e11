"""The review pages in a real headless browser (Debian's chromium driven by Selenium through chromedriver),
against the real app on a loopback port with a finished run: sign in, read the run, follow a live run.

The screenshot of the run page is kept as a test artifact: `test-artifacts/review-run-page.png`
(or under `OVERNIGHT_TEST_ARTIFACTS`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overnight.domain.runs import EventIn, FinishRun, RunStart
from tests.conftest import CHROMEDRIVER, CHROMIUM
from tests.factories import READ_TOKEN, SERVE_TOKEN, LiveServer, SteppingClock, live_server, make_store
from tests.review import golden_run

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("OVERNIGHT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
WAIT_S = 20


@pytest.fixture
def server(tmp_path: Path, _sqlite_template: Path, clock: SteppingClock) -> Iterator[LiveServer]:
    shutil.copy(_sqlite_template, tmp_path / "review.db")
    url = f"sqlite:///{tmp_path / 'review.db'}"
    store = make_store(url, clock)
    golden_run.build(store, clock)
    store.close()
    with live_server(url, clock=clock, sse_poll_ms=100) as live:
        yield live


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    home = tmp_path / "browser-home"  # chromium writes caches under HOME: keep the test HOME empty
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     f"--user-data-dir={home / 'profile'}", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_CONFIG_HOME": str(home / "config")}
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    return WebDriverWait(browser, WAIT_S).until(condition)


def sign_in(browser: Any, server: LiveServer, path: str, token: str) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    browser.get(server.base_url + path)
    assert "/review/sign-in" in browser.current_url  # no session: the page sent us to the form
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form.sign-in button").click()


def test_sign_in_and_read_the_run_verdict_candidates_and_canary_chart(server: LiveServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    run_page = f"/review/runs/{golden_run.RUN_ID}"
    sign_in(browser, server, run_page, READ_TOKEN)
    wait_for(browser, lambda b: b.current_url.endswith(run_page))
    verdict = browser.find_element(By.ID, "verdict").text
    assert "Run night-golden succeeded: SelectTool.v1 now serves bbbbbbbbbbbb" in verdict
    undo = browser.find_element(By.ID, "undo").text
    assert "overnight rollback -s SelectTool.v1 --to default --run night-golden --reason 'undo night-golden'" in undo
    rows = browser.find_elements(By.CSS_SELECTOR, "table.candidates tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in rows] == ["b" * 12, "d" * 12, "e" * 12]
    assert "best" in rows[0].text
    chart = browser.find_element(By.CSS_SELECTOR, "svg.canary-chart")
    assert chart.is_displayed()
    assert chart.size["width"] > 400
    assert len(chart.find_elements(By.CSS_SELECTOR, "polyline")) == 4
    assert len(chart.find_elements(By.CSS_SELECTOR, "line.threshold")) == 2
    assert browser.find_element(By.CSS_SELECTOR, "svg.candidate-chart").is_displayed()
    # readable at 1280 px: nothing forces the page sideways
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height + 140, 8000))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "review-run-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000


def test_a_serve_token_is_refused_at_the_form_and_sign_out_ends_the_session(server: LiveServer,
                                                                            browser: Any) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    sign_in(browser, server, "/review", SERVE_TOKEN)
    alert = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "[role=alert]"))
    assert "has role serve" in alert[0].text
    assert browser.get_cookies() == []
    browser.find_element(By.NAME, "token").send_keys(READ_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form.sign-in button").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "runs"))
    assert golden_run.RUN_ID in browser.find_element(By.ID, "runs").text
    cookie = browser.get_cookie("overnight_review")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # invisible to scripts
    browser.find_element(By.CSS_SELECTOR, "header form button").click()
    wait_for(browser, lambda b: "/review/sign-in" in b.current_url)
    browser.get(server.base_url + f"/review/runs/{golden_run.RUN_ID}")
    assert "/review/sign-in" in browser.current_url


def test_a_running_runs_page_follows_its_events_live(server: LiveServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    store = server.store
    store.start_run(request=RunStart(run_id="night-live", signature_ids=["SupportTriage.v1"]), actor="ops-agent",
                    default_lease_s=600)
    sign_in(browser, server, "/review/runs/night-live", READ_TOKEN)
    wait_for(browser, lambda b: b.find_elements(By.ID, "live"))
    said = "appended while the page was open <img src=x onerror=alert(1)>"  # shown as text, never run
    store.append_event(run_id="night-live", event=EventIn(kind="compile.started", phase="compile", message=said))
    wait_for(browser, lambda b: said in b.find_element(By.ID, "event-table").text)
    assert not browser.find_elements(By.CSS_SELECTOR, "#event-table img")
    store.finish_run(run_id="night-live", finish=FinishRun(status="cancelled"), actor="ops-agent")
    # the page reloads itself when the run finishes: the live marker is gone and the status is final
    wait_for(browser, lambda b: not b.find_elements(By.ID, "live"))
    assert "cancelled" in browser.find_element(By.TAG_NAME, "h1").text
