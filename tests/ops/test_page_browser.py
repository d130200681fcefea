"""/ops in a real headless Chromium, against ``ingest web`` on a seeded database and real Redis.

Debian's ``chromium`` and ``chromium-driver`` are used; when missing they are installed once
per run (as root, with apt). If that is impossible the tests skip, unless
``INGEST_REQUIRE_BROWSER=1``: then they fail. Selenium talks to the system chromedriver,
so Selenium Manager downloads nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from support.live import web_server
from support.ops_page_data import CUSTOMER, QueueState, Seeded, dead_letter, fill_queue, seed
from support.queue import dead_letters

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")
USER, PASSWORD = "oncall", "s3cret pass"
WAIT_SECONDS = 20


def _unavailable(reason: str) -> None:
    """Skip, or fail when the browser tests are required (CI)."""
    if os.environ.get("INGEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"INGEST_REQUIRE_BROWSER=1 but the browser cannot run: {reason}")
    pytest.skip(reason)


def _browser_present() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def _apt_install() -> str | None:
    """Install the packages with apt; None on success, else why not."""
    if _browser_present():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{' '.join(PACKAGES)} are not installed and cannot be (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=300"]  # another apt run holding the lock: wait for it
    install = ["apt-get", *wait, "install", "-y", *PACKAGES]
    error = ""
    for command in (install, ["apt-get", *wait, "update"], install):  # update only if a first try fails
        try:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            return f"{' '.join(command)} did not finish within 15 minutes"
        if result.returncode == 0 and command is install and _browser_present():
            return None
        error = result.stderr.strip()[-300:] or error
    return f"apt-get install {' '.join(PACKAGES)} failed: {error}"


@pytest.fixture(scope="session")
def browser_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Chromium and chromedriver present; installed once per run, xdist workers waiting on one lock."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this run's, for every worker
    outcome = shared / "chromium-install.json"
    with open(shared / "chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if outcome.exists():
                reason = orjson.loads(outcome.read_bytes())["reason"]
            else:
                reason = _apt_install()
                outcome.write_bytes(orjson.dumps({"reason": reason}))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if reason is not None:
        _unavailable(reason)
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")


@pytest.fixture
def driver(browser_ready: None) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    browser = webdriver.Chrome(service=service, options=options)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def server(db_url: str, redis_server_url: str, redis_namespace: str) -> Iterator[str]:
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "VAPI_SECRET": "webhook-secret",
        "INGEST_ENCRYPTION_KEYS": os.environ["INGEST_ENCRYPTION_KEYS"],
        "INGEST_OPS_USER": USER,
        "INGEST_OPS_PASSWORD": PASSWORD,
        "LOG_LEVEL": "WARNING",
    }
    with web_server(env) as base:
        yield base


@pytest.fixture
def seeded(db: psycopg.Connection[Any], redis_server_url: str, redis_namespace: str) -> Seeded:
    fill_queue(redis_server_url, redis_namespace, state=QueueState())
    return seed(db)


def with_credentials(base: str, path: str) -> str:
    user, password = (part.replace(" ", "%20") for part in (USER, PASSWORD))
    return base.replace("http://", f"http://{user}:{password}@") + path


def statuses(driver: Any, url_part: str) -> list[int]:
    """Statuses of the responses the browser received for URLs containing ``url_part``."""
    found = []
    for entry in driver.get_log("performance"):
        message = orjson.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            if url_part in response["url"]:
                found.append(int(response["status"]))
    return found


def wait_for(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(condition)


def text_of(driver: Any, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def test_page_renders_with_data_and_live_chart(driver: Any, server: str, seeded: Seeded) -> None:
    """The page shows the queue numbers, the failure and the call, and the chart fills from stats.json."""
    from selenium.webdriver.common.by import By

    driver.get(with_credentials(server, "/ops"))
    assert text_of(driver, "[data-stat='queue.ready']") == "3"
    assert text_of(driver, "[data-stat='queue.in_flight']") == "1"
    assert text_of(driver, "[data-stat='queue.delayed']") == "2"
    assert text_of(driver, "[data-stat='queue.dead']") == "1"
    assert text_of(driver, "[data-stat='events.failed']") == "2"
    failure = text_of(driver, f"#event-{seeded.report_event_id}")
    assert "end-of-call-report" in failure
    assert "the database went away" in failure
    call = text_of(driver, f"tr[data-call='{seeded.call_id}']")
    assert "•••4567" in call
    assert CUSTOMER not in driver.page_source
    # The script polls stats.json with the same credentials and draws every series.
    wait_for(driver, lambda d: text_of(d, "#live-status").startswith("updated"))
    points = driver.find_element(By.CSS_SELECTOR, "polyline[data-series='ready']").get_attribute("points")
    scale = int(text_of(driver, "#live-max"))  # the largest value drawn: 42 applied in the last minute
    assert scale == 42
    assert points.split()[-1] == f"600.0,{118 - 3 / scale * 114:.1f}"  # the latest sample, 3 ready, at the right
    assert 200 in statuses(driver, "/ops/stats.json")


def test_retry_button_reapplies_the_failed_event(
    driver: Any, server: str, seeded: Seeded, db: psycopg.Connection[Any]
) -> None:
    """Clicking retry on the failed report re-applies it: applied in Postgres, the row has its values."""
    from selenium.webdriver.common.by import By

    driver.get(with_credentials(server, "/ops"))
    button = driver.find_element(By.CSS_SELECTOR, f"button[data-action='retry'][data-event='{seeded.report_event_id}']")
    button.click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "notice"))
    assert text_of(driver, "#notice") == "Re-applied 1 of 1 event(s)."
    assert not driver.find_elements(By.ID, f"event-{seeded.report_event_id}")
    state = db.execute("SELECT state FROM call_events WHERE id = %s", (seeded.report_event_id,)).fetchone()
    assert state == ("applied",)
    row = db.execute("SELECT call_summary FROM user_sessions WHERE call_id = %s", (seeded.call_id,)).fetchone()
    assert row is not None
    assert row[0].startswith("Hemi Walker called")
    # The call's page now shows the transcript the report brought.
    driver.find_element(By.CSS_SELECTOR, f"tr[data-call='{seeded.call_id}'] a").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "transcript"))
    assert "book a check-up" in text_of(driver, "#transcript")


def test_unauthenticated_visit_is_refused(driver: Any, server: str, seeded: Seeded) -> None:
    """Without credentials the browser gets a 401 and none of the page."""
    with contextlib.suppress(Exception):  # some builds raise on the authentication prompt
        driver.get(f"{server}/ops")
    assert statuses(driver, "/ops") == [401]
    assert "Recent failures" not in driver.page_source


SCREENSHOTS = Path(os.environ.get("INGEST_SCREENSHOTS", "/tmp/ops-screenshots"))


def screenshot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1366, max(900, int(driver.execute_script("return document.body.scrollHeight"))))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_chart_is_drawn_at_load_and_times_have_one_format(driver: Any, server: str, seeded: Seeded) -> None:
    """Before the first poll the chart already shows the numbers; after it, its time is in the page's format."""
    from selenium.webdriver.common.by import By

    driver.get(with_credentials(server, "/ops"))
    assert text_of(driver, "#live-status").startswith("as of ")  # no poll yet: the server's sample
    dot = driver.find_element(By.CSS_SELECTOR, "circle[data-dot='ready']")
    assert (dot.get_attribute("cx"), dot.get_attribute("cy")) == ("600.0", f"{118 - 3 / 42 * 114:.1f}")
    assert text_of(driver, "[data-last='ready']") == "3"
    screenshot(driver, "overview-at-load")
    wait_for(driver, lambda d: text_of(d, "#live-status").startswith("updated"))
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.fullmatch(rf"updated {stamp} UTC · {stamp} UTC\+1[23]", text_of(driver, "#live-status"))
    assert re.fullmatch(rf"rendered {stamp} UTC · {stamp} UTC\+1[23] \(Pacific/Auckland\)", text_of(driver, "#updated"))
    points = driver.find_element(By.CSS_SELECTOR, "polyline[data-series='ready']").get_attribute("points").split()
    assert len(points) == 2  # the server's sample and the first poll's


def test_purge_button_asks_then_deletes(
    driver: Any, server: str, db: psycopg.Connection[Any], redis_server_url: str, redis_namespace: str
) -> None:
    """Purge shows the question first; confirming deletes the dead letter and the count drops to zero."""
    from selenium.webdriver.common.by import By
    from support.fixtures import load_event

    seed(db)  # an empty queue but for the dead letter below
    redis_id = dead_letter(redis_server_url, redis_namespace, load_event("status_update_bad_call_id"))
    driver.get(with_credentials(server, "/ops"))
    assert text_of(driver, "[data-stat='queue.dead']") == "1"
    assert "status-update" in text_of(driver, f"#dead-{redis_id}")
    screenshot(driver, "overview-dead-letters")
    driver.find_element(By.CSS_SELECTOR, f"button[data-dead-action='purge'][data-dead='{redis_id}']").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "purge-confirm"))
    assert "for good?" in text_of(driver, "#purge-confirm h2")
    assert dead_letters(redis_server_url, redis_namespace) == 1  # asking deleted nothing
    screenshot(driver, "purge-confirm")
    driver.find_element(By.CSS_SELECTOR, "#purge-confirm button[data-dead-action='purge']").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "notice"))
    assert text_of(driver, "#notice") == "Deleted 1 dead letter(s) for good."
    assert dead_letters(redis_server_url, redis_namespace) == 0
    assert text_of(driver, "[data-stat='queue.dead']") == "0"
    assert not driver.find_elements(By.ID, f"dead-{redis_id}")
