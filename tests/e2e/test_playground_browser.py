"""The web playground at /ui in a real browser (Debian's Chromium driven by Playwright) on
the real stack: a memory added and a job submitted through the page, its tokens streamed
in, the retrieved memory listed and highlighted in the prompt; a queued job cancelled;
search and delete; the API key sent when authentication is on. Each test keeps a
screenshot in its temp dir."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memq.contracts import JobPublic, JobStatus
from memq.ops.launcher import Stack
from tests.e2e.ops import OPS_KEY
from tests.utils.stack import paused

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 120_000

if not CHROMIUM.exists():
    pytest.skip(
        f"no browser at {CHROMIUM}: install Debian's chromium (`apt-get install -y chromium`) "
        "to run the playground tests",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (dev extras)"
)
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sync_api.BrowserContext]:
    """One headless Chromium with a fresh profile (no `playwright install`: Debian's
    binary)."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: sync_api.BrowserContext, tmp_path: Path) -> Iterator[sync_api.Page]:
    """A tab whose script errors fail the test; a screenshot is kept in the test's temp
    dir whatever happens."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
        assert errors == [], f"script errors in the page: {errors}"
    finally:
        with contextlib.suppress(sync_api.Error):  # a failed test keeps its own error
            tab.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
            tab.evaluate("localStorage.clear()")
        tab.close()


def _open(page: sync_api.Page, stack: Stack, namespace: str) -> None:
    response = page.goto(f"{stack.gateway_url}/ui")
    assert response is not None and response.status == 200
    # Only the gateway's own script may run where a key may be kept.
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#server-status")).to_have_attribute("data-ready", "true")
    box = page.get_by_label("Namespace", exact=True)
    box.fill(namespace)
    box.press("Tab")


def _job(stack: Stack, job_id: str, key: str | None = None) -> JobPublic:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = httpx.get(f"{stack.gateway_url}/v1/jobs/{job_id}", headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    return JobPublic.model_validate(resp.json())


def _ns() -> str:
    return f"user:ui-{uuid.uuid4().hex[:8]}"


def test_a_job_submitted_in_the_page_streams_its_text_and_shows_the_memory_it_used(
    stack: Stack, page: sync_api.Page, tmp_path: Path
) -> None:
    fact = "Zorblat the wizard lives in Reykjavik and keeps bees."
    _open(page, stack, _ns())
    page.get_by_label("Add memories: one per line").fill(fact)
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#memory-message")).to_contain_text("Added 1")
    expect(page.locator("#memory-table tbody")).to_contain_text(fact)

    page.get_by_label("Prompt", exact=True).fill(
        "Question: Where does Zorblat the wizard live?\nAnswer:"
    )
    page.get_by_label("Max new tokens").fill("24")
    page.get_by_role("button", name="Submit").click()
    status = page.locator("#job-status")
    expect(status).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)

    job = _job(stack, status.get_attribute("data-job-id") or "")
    assert job.status == JobStatus.succeeded and job.result is not None
    # The text came in as token events over the page's own event stream, and what the
    # page shows at the end is the job's text.
    output = page.locator("#job-output")
    assert int(output.get_attribute("data-token-events") or 0) >= 1
    assert output.text_content() == job.result.text
    # The retrieved memory is listed with its numbers and highlighted in the prompt.
    [memory] = job.result.memories
    assert memory.text == fact and memory.used and memory.similarity is not None
    row = page.locator("#retrieved-table tbody tr", has_text=fact)
    expect(row).to_contain_text("used")
    expect(row).to_contain_text(f"{memory.similarity:.3f}")
    expect(page.locator("#job-prompt mark")).to_have_text(fact)
    assert page.locator("#job-prompt").text_content() == job.result.prompt
    expect(page.locator("#job-numbers")).to_contain_text("Generation")
    page.screenshot(path=str(tmp_path / "playground-job.png"), full_page=True)
    assert (tmp_path / "playground-job.png").stat().st_size > 0


def test_a_queued_job_is_cancelled_from_the_page(stack: Stack, page: sync_api.Page) -> None:
    _open(page, stack, _ns())
    status = page.locator("#job-status")
    with paused(stack):
        page.get_by_role("button", name="Submit").click()
        expect(status).to_have_attribute("data-status", "queued")
        cancel = page.get_by_role("button", name="Cancel the job")
        expect(cancel).to_be_enabled()
        cancel.click()
        expect(status).to_have_attribute("data-status", "cancelled")
    expect(page.get_by_role("button", name="Cancel the job")).to_be_disabled()
    job = _job(stack, status.get_attribute("data-job-id") or "")
    assert job.status == JobStatus.cancelled and JobStatus.running not in job.timestamps


def test_memories_are_searched_and_deleted_from_the_page(stack: Stack, page: sync_api.Page) -> None:
    ns = _ns()
    facts = ["Mira plays the cello in an orchestra.", "The office coffee machine is broken."]
    _open(page, stack, ns)
    page.get_by_label("Add memories: one per line").fill("\n".join(facts))
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#memory-message")).to_contain_text("Added 2")

    page.get_by_label("Search this namespace").fill("which instrument does Mira play")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#memory-caption")).to_contain_text("Best matches")
    first = page.locator("#memory-table tbody tr").first
    expect(first).to_contain_text(facts[0])
    memory_id = first.get_attribute("data-memory-id")
    # Keyboard only: focus the row's delete button and press Enter.
    page.get_by_role("button", name=f"Delete memory: {facts[0]}").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#memory-message")).to_contain_text(f"Deleted: {facts[0]}")
    expect(page.locator("#memory-table tbody")).not_to_contain_text(facts[0])
    gone = httpx.get(f"{stack.gateway_url}/v1/memories/{memory_id}", timeout=30)
    assert gone.status_code == 404
    listed = httpx.get(
        f"{stack.gateway_url}/v1/memories", params={"namespace": ns}, timeout=30
    ).json()
    assert [m["text"] for m in listed["items"]] == [facts[1]]


def test_with_authentication_on_the_page_sends_the_key_typed_in(
    ops_stack: Stack, page: sync_api.Page
) -> None:
    _open(page, ops_stack, _ns())
    expect(page.locator("#errors")).to_contain_text("401 unauthorized")  # no key yet

    page.get_by_label("API key").fill(OPS_KEY)
    page.get_by_label("API key").press("Tab")
    page.get_by_label("Max new tokens").fill("8")
    page.get_by_role("button", name="Submit").click()
    status = page.locator("#job-status")
    expect(status).to_have_attribute("data-status", "succeeded", timeout=WAIT_MS)
    assert int(page.locator("#job-output").get_attribute("data-token-events") or 0) >= 1
    job = _job(ops_stack, status.get_attribute("data-job-id") or "", key=OPS_KEY)
    assert job.tenant == "ops"
    # Remembered in this browser (the checkbox is on by default) for the next visit.
    assert page.evaluate("localStorage.getItem('memq.apiKey')") == OPS_KEY
    page.reload()
    expect(page.get_by_label("API key")).to_have_value(OPS_KEY)
