"""The dashboard in a real browser (Debian's chromium through Playwright), as user stories: each signs
in with an API key, does what a person would, saves screenshots, and leaves no console error."""

from __future__ import annotations

import base64
import io
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import bearer, issue_key
from tests.platform.web.conftest import Tab
from tests.platform.web.test_web_evaluation import ROWS as EVAL_ROWS
from tests.platform.web.test_web_evaluation import store as store_eval

pytestmark = pytest.mark.timeout(300)

OpenTab = Callable[..., Tab]

HIVE = "\n".join([
    "# The hive",
    "",
    "A colony has one queen, a few hundred drones and thousands of workers.",
    "",
    "## Honey",
    "",
    "Workers make honey from nectar: they fan it with their wings until it thickens,",
    "then seal each cell with wax.",
    "",
    "## Swarming",
    "",
    "In spring the old queen leaves with half the workers to found a new colony.",
]) + "\n"

# Records every change of a run's live answer, so a story can tell it streamed in before the finished
# run replaced it.
WATCH_ANSWER = """
window.__answerSeen = [];
new MutationObserver(() => {
  const el = document.querySelector('.live-answer');
  if (el && el.textContent) window.__answerSeen.push(el.textContent.length);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hive.md", HIVE)
        z.writestr("keeping.md", "# Keeping bees\n\nInspect the hive every week in summer.\n")
        z.writestr("latin1.txt", b"caf\xe9 au lait, cr\xe8me br\xfbl\xe9e\n" * 3)  # not UTF-8: fails
        z.writestr("logo.ico", b"\x00\x00\x01\x00\x01\x00" + bytes(64))  # binary: skipped
    return buf.getvalue()


def sign_in(tab: Tab, key: str, then: str = "/corpora") -> None:
    tab.go(then)
    tab.page.wait_for_url(re.compile(r"/signin\?next="))
    tab.page.fill("input[name=api_key]", key)
    tab.page.click("button:has-text('Sign in')")
    tab.page.wait_for_url(re.compile(re.escape(then) + "$"))


def _ingest(base: str, key: str, folder: Path, corpus: str) -> None:
    """A corpus of ``folder`` made through the REST API (the stories that do not watch an upload)."""
    with httpx.Client(base_url=base, headers=bearer(key), timeout=60) as c:
        job = c.post(f"/v1/corpora/{corpus}/ingest", json={"path": str(folder)})
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 180
        while (state := c.get(f"/v1/jobs/{job.json()['job_id']}").json()["state"]) not in (
                "succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, "the ingest did not finish"
            time.sleep(0.2)
        assert state == "succeeded"


def _hive(tmp_path: Path) -> Path:
    folder = tmp_path / "bees"
    folder.mkdir()
    (folder / "hive.md").write_text(HIVE)
    return folder


def _ask(tab: Tab, question: str, strategy: str | None = None) -> Any:
    page = tab.page
    page.fill("textarea[name=question]", question)
    if strategy:
        page.select_option("[data-testid=strategy]", strategy)
    page.click(".askbox button[type=submit]")
    page.wait_for_selector(".run-live, .run-card")
    card = page.wait_for_selector(".run-card", timeout=120_000)
    return card


def _no_sideways_scroll(tab: Tab) -> None:
    width = tab.page.evaluate("document.documentElement.scrollWidth")
    assert width <= tab.page.viewport_size["width"] + 1, f"{tab.page.url} is {width}px wide"


def test_story_upload_a_zip_watch_it_index_ask_and_follow_a_citation(
    open_tab: OpenTab, web_server: str, tmp_path: Path,
) -> None:
    key = issue_key("admin")
    tab = open_tab(1440)
    page = tab.page
    page.add_init_script(WATCH_ANSWER)
    sign_in(tab, key)
    assert page.locator("article.empty h3").inner_text() == "No corpora yet"
    tab.shot("corpora-empty")

    page.fill("input[name=name]", "handbook")
    page.click("button:has-text('Create corpus')")
    page.wait_for_url(re.compile(r"/corpora/handbook/sources$"))

    # Drag and drop: a zip dropped on the zone is what the form sends.
    drop = page.evaluate_handle(
        """(b64) => { const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                      const dt = new DataTransfer();
                      dt.items.add(new File([bytes], 'handbook.zip', {type: 'application/zip'}));
                      return dt; }""", base64.b64encode(_zip()).decode())
    page.dispatch_event("[data-dropzone]", "drop", {"dataTransfer": drop})
    assert "handbook.zip" in page.locator("[data-chosen]").inner_text()
    tab.shot("sources")
    page.click("[data-testid=upload]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{32}$"))

    # The progress panel is swapped in over SSE until the job ends, then the items are read again.
    state = page.locator("[data-testid=job-state]")
    state.filter(has_text="succeeded").wait_for(timeout=180_000)
    panel = page.locator(".progress-panel").inner_text()
    assert "2 indexed" in panel and "1 skipped" in panel and "1 failed" in panel, panel
    failed = page.locator("#items tr[data-state=failed]")
    failed.wait_for()
    assert "latin1.txt" in failed.inner_text() and failed.locator("td.reason").inner_text().strip()
    assert page.locator("#items tr[data-state=skipped] td.reason").inner_text().strip()
    tab.shot("job-done")

    page.click("a:has-text('Open handbook')")
    page.wait_for_url(re.compile(r"/corpora/handbook$"))
    bad = page.locator("table.docs tr", has_text="latin1.txt")
    assert bad.locator(".state-failed").count() == 1 and bad.locator(".reason").inner_text().strip()
    page.fill("input[name=q]", "how do workers make honey")
    page.click("button:has-text('Search')")
    hit = page.locator("table.hits tbody tr").first
    hit.wait_for()
    assert "hive.md" in hit.inner_text()
    tab.shot("corpus")

    page.click("a:has-text('Ask')")
    page.wait_for_url(re.compile(r"/corpora/handbook/ask$"))
    card = _ask(tab, "How do workers make honey?")
    assert page.evaluate("Math.max(0, ...window.__answerSeen)") > 0, "no answer text streamed in"
    assert card.query_selector("[data-testid=strategy-used]").inner_text() in (
        "stuff", "retrieve", "scoped-stuff", "map-reduce")
    assert "Estimated tokens" in card.inner_text() and "Actual tokens" in card.inner_text()
    # What the answer rests on is stated above its sources (the tiny model points at nothing).
    support = card.query_selector("[data-testid=answer-support]")
    assert support is not None and support.inner_text().split(" ")[0] in (
        "Supported", "Partly", "Unsupported", "Not")
    tab.shot("ask")

    link = page.locator(".run-card a.citation").first
    target = link.get_attribute("href") or ""
    lines = re.search(r"#L(\d+)-L(\d+)$", target)
    assert lines, target
    link.click()
    page.wait_for_url(re.compile(r"/documents/.*#L\d+-L\d+$"))
    marked = page.locator(".source .line.hl")
    first, last = int(lines.group(1)), int(lines.group(2))
    assert marked.count() == last - first + 1
    assert marked.first.get_attribute("id") == f"L{first}"
    assert marked.first.is_visible()
    box = marked.first.bounding_box()
    assert box is not None and 0 <= box["y"] < page.viewport_size["height"]  # scrolled into view
    tab.shot("document-cited")


def test_story_a_forced_strategy_is_honoured_and_rated(
    open_tab: OpenTab, web_server: str, tmp_path: Path,
) -> None:
    key = issue_key("admin")
    _ingest(web_server, key, _hive(tmp_path), "bees")
    tab = open_tab(1440)
    page = tab.page
    sign_in(tab, key, then="/corpora/bees/ask")
    card = _ask(tab, "What does the old queen do in spring?", strategy="retrieve")
    assert card.query_selector("[data-testid=strategy-used]").inner_text() == "retrieve"
    assert "forced" in card.query_selector(".strategy summary").inner_text()

    page.fill(".feedback input[name=comment]", "right section, thanks")
    page.click(".feedback button[aria-label='Thumbs up']")
    page.locator(".feedback .saved").wait_for()
    tab.shot("run-rated")

    tab.go("/runs?strategy=retrieve&feedback=up")
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 1 and "right section" in rows.first.inner_text()
    tab.go("/runs?feedback=down")
    assert page.locator("article.empty h3").inner_text() == "No runs match"
    tab.go("/runs")
    tab.shot("runs")


def test_story_a_new_key_is_shown_once_and_a_revoked_key_is_sent_to_sign_in(
    open_tab: OpenTab, web_server: str,
) -> None:
    admin = issue_key("admin", name="operator")
    tab = open_tab(1440)
    page = tab.page
    sign_in(tab, admin, then="/admin")
    page.fill(".newkey input[name=name]", "laptop")
    page.click(".newkey button:has-text('Create key')")
    secret = page.locator("[data-testid=new-secret]").input_value()
    assert secret.startswith("crl_")
    tab.shot("admin-new-key")
    tab.go("/admin")
    assert secret not in page.content()  # shown once

    page.fill("input[name=monthly_token_budget]", "5000000")
    page.click("button:has-text('Save budget')")
    page.wait_for_url(re.compile(r"/admin$"))
    assert "of 5" in page.locator("section", has_text="Budget and usage").inner_text()

    laptop = open_tab(1440)
    sign_in(laptop, secret)
    assert "laptop" not in laptop.page.url
    # The admin revokes it from the keys table.
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="laptop").locator("button:has-text('Revoke')").click()
    page.wait_for_url(re.compile(r"/admin$"))
    assert page.locator("tr", has_text="laptop").locator(".state-failed").inner_text() == "revoked"

    laptop.go("/runs")
    laptop.page.wait_for_url(re.compile(r"/signin\?next=%2Fruns&reason=revoked$"))
    assert "revoked or has expired" in laptop.page.locator("p.notice").inner_text()
    laptop.shot("signin-revoked")


def test_story_a_post_without_the_csrf_token_is_refused(open_tab: OpenTab, web_server: str) -> None:
    tab = open_tab(1440)
    sign_in(tab, issue_key("admin"))
    # The browser holds the session cookie; a form from elsewhere does not hold the token.
    refused = tab.page.request.post(web_server + "/corpora", form={"name": "planted"}, max_redirects=0)
    assert refused.status == 403 and "CSRF token" in refused.text()
    forged = tab.page.request.post(web_server + "/corpora", form={"name": "planted", "csrf_token": "0" * 64},
                                   max_redirects=0)
    assert forged.status == 403
    tab.go("/corpora")
    assert "planted" not in tab.page.content()


def test_story_the_key_pages_fit_a_phone_and_a_desktop(
    open_tab: OpenTab, web_server: str, tmp_path: Path,
) -> None:
    key = issue_key("admin")
    _ingest(web_server, key, _hive(tmp_path), "bees")
    with httpx.Client(base_url=web_server, headers=bearer(key), timeout=60) as c:
        run_id = c.post("/v1/corpora/bees/runs", json={"question": "Who leaves the hive?"}).json()["run_id"]
        job_id = c.get("/v1/jobs").json()["items"][0]["id"]
        deadline = time.monotonic() + 120
        while c.get(f"/v1/runs/{run_id}").json()["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    store_eval("default", EVAL_ROWS)
    for width in (360, 1440):
        tab = open_tab(width, 780)
        sign_in(tab, key)
        for name, path in (("corpora", "/corpora"), ("corpus", "/corpora/bees"),
                           ("document", "/corpora/bees/documents/bees/hive.md#L7-L8"),
                           ("job", f"/jobs/{job_id}"), ("run", f"/runs/{run_id}"), ("runs", "/runs"),
                           ("jobs", "/jobs"), ("ask", "/corpora/bees/ask"), ("admin", "/admin"),
                           ("engine", "/engine"), ("evaluation", "/evaluation")):
            tab.go(path)
            tab.page.wait_for_load_state("networkidle") if name != "job" else None
            if name == "engine":  # the model answered in this process: its readings are plotted
                assert tab.page.locator(".chart .uplot").count() == 2
            if name == "evaluation":
                assert tab.page.locator("[data-scatter] .uplot").count() == 1
            _no_sideways_scroll(tab)
            tab.shot(f"page-{name}")
        assert tab.page.locator(".topbar a:has-text('Runs')").is_visible()
