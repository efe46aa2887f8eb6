"""The Workflows page in real Chromium against a real stack: Dagster webserver and daemon,
the bridge on a loopback port serving the built page, the offline provider making media.

One stack and one browser for the module. Screenshots of the main states are written to
`web/screenshots/` (ignored by git).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from werkzeug.serving import make_server

from bridge_api import create_app
from runtime.stack import DagsterStack, free_port
from tests.conftest import SAMPLE_IMAGE
from wf_core.settings import REPO_ROOT

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DIST = REPO_ROOT / "web" / "dist"
AXE = REPO_ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO_ROOT / "web" / "screenshots"
WORKFLOW = "Image Edit to Video"
JOB_WAIT_MS = 60_000
FAULTY_MODEL = "kling/v1.6"  # the video model of the tests that set faults


class StreamCutter:
    """WSGI wrapper for the test server: cuts one job stream after its first two events,
    as a dropped connection would, and records the `Last-Event-ID` of every stream request."""

    def __init__(self, app) -> None:
        self.app = app
        self.armed = False
        self.last_event_ids: list[str | None] = []

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        if not environ.get("PATH_INFO", "").endswith("/stream"):
            return body
        self.last_event_ids.append(environ.get("HTTP_LAST_EVENT_ID"))
        if not self.armed:
            return body
        self.armed = False
        return self._cut(body)

    @staticmethod
    def _cut(body):
        events = 0
        try:
            for chunk in body:
                yield chunk
                events += chunk.count(b"\nevent: ")
                if events >= 2:
                    return  # the connection ends here; EventSource reconnects by itself
        finally:
            if hasattr(body, "close"):
                body.close()


@dataclass
class Env:
    """The running stack and bridge, and the knobs the tests turn."""

    url: str
    app: object
    faults: Path
    specs: Path
    background: list[str]
    streams: StreamCutter

    def set_faults(self, faults: dict) -> None:
        """What the offline provider's next calls do (see LocalModelProvider.fault_file)."""
        self.faults.write_text(json.dumps(faults))

    def execute(self) -> str:
        """Start a job through the API (not the page); its id."""
        with SAMPLE_IMAGE.open("rb") as image:
            response = httpx.post(
                f"{self.url}/workflows/execute",
                data={"workflow_id": "img-edit-to-video"},
                files={"file": ("sample.jpg", image, "image/jpeg")},
                timeout=30,
            )
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    def wait_status(self, job_id: str, wanted: str, timeout: float = 60) -> dict:
        """Poll the execution route until the job reaches `wanted`."""
        deadline = time.monotonic() + timeout
        while True:
            doc = httpx.get(f"{self.url}/workflows/execution/{job_id}", timeout=10).json()
            if doc["status"] == wanted or time.monotonic() > deadline:
                assert doc["status"] == wanted, doc
                return doc
            time.sleep(0.3)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One Dagster stack and one bridge (AUTH_MODE=disabled, as `make demo`) for the module."""
    if not (DIST / "index.html").is_file():
        pytest.fail("web/dist is not built: run `make install`")
    root = tmp_path_factory.mktemp("web")
    faults = root / "faults.json"
    faults.write_text("{}")
    # The bridge reads its own copy of the specs, so a test can add a spec file to it.
    specs = root / "specs"
    shutil.copytree(REPO_ROOT / "workflow_specs", specs)
    media = root / "media"
    stack_env = {
        "WORKFLOW_SPECS_DIR": str(specs),  # the stack's code server reads the same copy
        "MEDIA_DIR": str(media),
        "LOCAL_PROVIDER_FAULTS": str(faults),
        "LOCAL_PROVIDER_LATENCY": "0",
        "RETRY_BACKOFF_BASE": "0.5",
        "RETRY_BACKOFF_CAP": "1",
    }
    with DagsterStack(root / "home", env=stack_env, timeout=90) as stack:
        app = create_app(
            {
                "DAGSTER_GRAPHQL_URL": stack.graphql_url,
                "MEDIA_DIR": str(media),
                "UPLOAD_DIR": str(root / "uploads"),
                "SPECS_DIR": str(specs),
                "AUTH_MODE": "disabled",
                "STREAM_POLL_SECONDS": 0.2,
                "RATELIMIT_EXECUTE": "1000 per minute",
                "RATELIMIT_KEY_PREFIX": f"web-{root.name}",
            }
        )
        port = free_port()
        streams = StreamCutter(app)
        server = make_server("127.0.0.1", port, streams, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running = Env(f"http://127.0.0.1:{port}", app, faults, specs, [], streams)
        # Two jobs on the default models, started now and run while the page is tested:
        # the history and the accessibility check open them. Faults name the model the
        # page's tests choose (kling/v1.6), so these jobs never meet one.
        running.background.extend(running.execute() for _ in range(2))
        try:
            yield running
        finally:
            server.shutdown()
            thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install`")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, env: Env) -> Iterator[object]:
    """A fresh browser context on the page, desktop width; fails on any console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(env.url + "/")
    expect(tab.get_by_label(WORKFLOW)).to_be_visible()
    yield tab
    context.close()
    # The refused upload's 415 is logged by Chromium as a failed resource load: not a fault.
    unexpected = [e for e in errors if "status of 4" not in e]
    assert unexpected == []


def shoot(tab, name: str) -> None:
    """A full-page screenshot of the current state."""
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def run_sample(tab, video_model: str | None = FAULTY_MODEL) -> None:
    """Choose the workflow, upload the sample, choose the video model, press Run."""
    tab.get_by_label(WORKFLOW).check()
    tab.get_by_label("Input image").set_input_files(str(SAMPLE_IMAGE))
    if video_model:
        tab.get_by_label("Model for video_generation").select_option(video_model)
    tab.get_by_role("button", name="Run workflow").click()


def shown_job(tab, env: Env) -> dict:
    """The execution document of the job the tracker shows."""
    job_id = tab.locator(".progress-tracker").get_attribute("data-job-id")
    return httpx.get(f"{env.url}/workflows/execution/{job_id}", timeout=10).json()


def steps(tab, status: str):
    """The tracker's steps in `status`."""
    return tab.locator(f".progress-tracker li.step[data-status='{status}']")


def job_status(tab):
    """The tracker's job status badge."""
    return tab.locator(".progress-tracker [data-job-status]")


def wait_for_playable_video(tab) -> dict:
    """Until the result video has decoded a frame; its readyState and duration."""
    video = tab.locator(".result video")
    expect(video).to_be_visible(timeout=JOB_WAIT_MS)
    tab.wait_for_function(
        "() => { const v = document.querySelector('.result video');"
        " return v && v.readyState >= 2 && v.duration > 0; }",
        timeout=30_000,
    )
    return video.evaluate("v => ({readyState: v.readyState, duration: v.duration, src: v.src})")


def test_page_is_served_with_caching_headers(env: Env) -> None:
    index = httpx.get(env.url + "/")
    assert index.status_code == 200 and index.headers["cache-control"] == "no-cache"
    assert '"auth_mode": "disabled"' in index.text
    asset = next(p.name for p in (DIST / "assets").glob("*.js"))
    response = httpx.get(f"{env.url}/assets/{asset}")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"].startswith("text/javascript")


def test_run_a_workflow_to_a_playable_video(page, env: Env) -> None:
    env.set_faults({})
    page.get_by_label(WORKFLOW).check()
    page.get_by_label("Model for image_edit").select_option("flux-kontext-pro")
    page.get_by_label("Prompt for image_edit").fill("make it teal")
    shoot(page, "01-start")
    env.streams.armed = True  # this job's stream drops after two events
    seen = len(env.streams.last_event_ids)
    run_sample(page, video_model=None)
    expect(job_status(page)).to_have_attribute("data-job-status", "completed", timeout=JOB_WAIT_MS)
    expect(steps(page, "completed")).to_have_count(3)
    edit = shown_job(page, env)["checkpoints"]["1"]["output"]
    assert (edit["model_used"], edit["prompt"]) == ("flux-kontext-pro", "make it teal")
    # The browser reconnected by itself, saying what it had received.
    resumed = env.streams.last_event_ids[seen + 1 :]
    assert resumed and resumed[0] and resumed[0].startswith("v2."), env.streams.last_event_ids
    expect(page.locator(".progress-tracker li.step img")).to_have_count(2)  # upload, edit
    state = wait_for_playable_video(page)
    assert state["readyState"] >= 2 and state["duration"] > 0
    assert state["src"].endswith("/video_generation.mp4")
    link = page.get_by_role("link", name="Download video")
    assert link.get_attribute("href").endswith("/video_generation.mp4")
    assert link.get_attribute("download") == "video_generation.mp4"
    shoot(page, "02-completed")


def test_rate_limited_job_counts_down_then_completes_by_itself(page, env: Env) -> None:
    # Long enough to be seen: the page learns of the failure once its run has ended.
    env.set_faults({FAULTY_MODEL: {"error_type": "rate_limit", "retry_after": 10, "times": 1}})
    run_sample(page)
    countdown = page.locator("li.step[data-step='video_generation'] .countdown")
    expect(countdown).to_contain_text("Next attempt in", timeout=JOB_WAIT_MS)
    expect(job_status(page)).to_have_attribute("data-job-status", "pending_retry")
    expect(page.locator("li.step[data-status='failed_retryable']")).to_contain_text("rate_limit")
    shoot(page, "03-waiting-to-retry")
    # No click: the retry sensor runs the step again when the time comes.
    expect(job_status(page)).to_have_attribute("data-job-status", "completed", timeout=JOB_WAIT_MS)
    expect(steps(page, "completed")).to_have_count(3)
    assert shown_job(page, env)["checkpoints"]["2"]["output"]["model_used"] == FAULTY_MODEL
    wait_for_playable_video(page)


def test_failed_job_shows_retry_and_retry_resumes_it(page, env: Env) -> None:
    env.set_faults({FAULTY_MODEL: {"error_type": "content_rejected", "times": 1}})
    run_sample(page)
    retry = page.get_by_role("button", name="Retry")
    expect(retry).to_be_visible(timeout=JOB_WAIT_MS)
    expect(job_status(page)).to_have_attribute("data-job-status", "failed")
    failed = page.locator("li.step[data-step='video_generation']")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed).to_contain_text("content_rejected")
    expect(steps(page, "completed")).to_have_count(2)
    shoot(page, "04-failed")
    retry.click()
    expect(job_status(page)).to_have_attribute("data-job-status", "completed", timeout=JOB_WAIT_MS)
    expect(steps(page, "completed")).to_have_count(3)
    expect(retry).to_have_count(0)
    wait_for_playable_video(page)


def test_cancel_a_running_job(page, env: Env) -> None:
    # The video step's create call is held for a minute: the job is running meanwhile.
    env.set_faults({FAULTY_MODEL: {"delay": 60, "times": 1}})
    run_sample(page)
    expect(page.locator("li.step[data-step='image_edit']")).to_have_attribute(
        "data-status", "completed", timeout=JOB_WAIT_MS
    )
    expect(job_status(page)).to_have_attribute("data-job-status", "running")
    shoot(page, "05-running")
    page.get_by_role("button", name="Cancel job").click()
    expect(job_status(page)).to_have_attribute("data-job-status", "cancelled", timeout=JOB_WAIT_MS)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    shoot(page, "06-cancelled")


def test_refused_upload_shows_the_api_message_next_to_the_file_field(page, env: Env) -> None:
    page.get_by_label(WORKFLOW).check()
    not_an_image = {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": b"MZ\x90\0" * 64}
    page.get_by_label("Input image").set_input_files(not_an_image)
    page.get_by_role("button", name="Run workflow").click()
    message = page.locator("#input-file-error")
    expect(message).to_be_visible()
    expect(message).to_have_attribute("role", "alert")
    expect(message).to_contain_text("upload")  # the API's own words: "The file is ...; upload ..."
    expect(page.get_by_label("Input image")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".progress-tracker")).to_have_count(0)
    shoot(page, "07-refused-upload")


def test_rate_limited_execute_says_when_to_try_again(page, env: Env) -> None:
    env.set_faults({})
    # A new limit string counts afresh: one request passes, the next is refused for an hour.
    env.app.config["RATELIMIT_EXECUTE"] = "1 per hour"
    try:
        env.execute()
        run_sample(page)
        notice = page.get_by_text("Too many requests. You can try again in")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("min")  # Retry-After: the rest of the hour
        expect(page.get_by_role("button", name="Run workflow")).to_be_disabled()
        expect(page.locator(".progress-tracker")).to_have_count(0)
        shoot(page, "08-rate-limited")
    finally:
        env.app.config["RATELIMIT_EXECUTE"] = "1000 per minute"


def test_history_lists_the_jobs_and_opens_one_with_its_checkpoints(page, env: Env) -> None:
    first, second = env.background
    env.wait_status(first, "completed")
    page.reload()
    history = page.locator(".job-history")
    expect(history.locator("li[data-job-id]").first).to_be_visible()
    more = page.get_by_role("button", name="Load more jobs")
    while history.locator(f"li[data-job-id='{first}']").count() == 0 and more.count():
        more.click()  # the next page of /workflows/jobs
        page.wait_for_timeout(300)
    for job_id in (first, second):
        expect(history.locator(f"li[data-job-id='{job_id}']")).to_be_visible()
    ids = history.locator("li[data-job-id]").evaluate_all("els => els.map(e => e.dataset.jobId)")
    assert ids.index(second) < ids.index(first)  # newest first
    history.locator(f"li[data-job-id='{first}'] button").click()
    expect(job_status(page)).to_have_attribute("data-job-status", "completed")
    expect(steps(page, "completed")).to_have_count(3)
    wait_for_playable_video(page)
    shoot(page, "09-history")


def test_a_new_spec_file_appears_in_the_selector_after_a_reload(page, env: Env) -> None:
    text = (env.specs / "img-edit-to-video.yaml").read_text()
    new = env.specs / "web-test-flow.yaml"
    new.write_text(
        text.replace("id: img-edit-to-video", "id: web-test-flow").replace(
            "name: Image Edit to Video", "name: Web Test Flow"
        )
    )
    try:
        expect(page.get_by_label("Web Test Flow")).to_have_count(0)
        # Listed once the shared code server has reloaded it (a few seconds).
        deadline = time.monotonic() + 30
        while "web-test-flow" not in httpx.get(f"{env.url}/workflows/list", timeout=30).text:
            assert time.monotonic() < deadline, "the new spec was never listed"
            time.sleep(0.25)
        page.reload()
        expect(page.get_by_label("Web Test Flow")).to_be_visible()
    finally:
        new.unlink()


def test_keyboard_order_and_phone_width(browser, env: Env) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    tab = context.new_page()
    tab.goto(env.url + "/")
    expect(tab.get_by_label(WORKFLOW)).to_be_visible()
    wide = tab.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"the page scrolls sideways by {wide}px at phone width"
    shoot(tab, "10-phone")
    order = []
    for _ in range(20):
        tab.keyboard.press("Tab")
        order.append(
            tab.evaluate("() => document.activeElement.id || document.activeElement.textContent")
        )
        if order[-1] == "Run workflow":
            break
    context.close()
    radio = next(i for i, name in enumerate(order) if name.startswith("workflow-"))
    assert radio < order.index("input-file") < order.index("Run workflow"), order


def test_no_serious_accessibility_violations(browser, env: Env) -> None:
    job_id = env.background[1]
    env.wait_status(job_id, "completed")
    # The page's CSP admits only its own scripts: axe is injected as a test's script.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    tab = context.new_page()
    tab.goto(env.url + "/")
    tab.locator(f".job-history li[data-job-id='{job_id}'] button").click()
    expect(tab.locator(".result video")).to_be_visible()
    tab.add_script_tag(path=str(AXE))
    results = tab.evaluate("async () => await axe.run(document)")
    context.close()
    serious = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]])
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == []
    assert results["passes"], "axe checked nothing"
