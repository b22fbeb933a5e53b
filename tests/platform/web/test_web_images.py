"""Text read from an image, as people see it in the dashboard: the run lists the source with a
thumbnail of the image and a box over what was read, the image opens whole, and the document's page
shows its images — each behind the same session check as every page."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import ImageFont
from sqlalchemy import select

from corral.core.db import Chunk, get_sessionmaker
from corral.platform.api.app import create_app
from tests.agents.ocr_rows import BOX, FONT, mark_ocr, png
from tests.conftest import bearer, clear_caches, issue_key
from tests.platform.test_ask_end_to_end import write_corpus
from tests.platform.web.conftest import Tab
from tests.platform.web.test_web_access import sign_in as sign_in_client
from tests.platform.web.test_web_browser import _ask, _ingest, sign_in

pytestmark = pytest.mark.timeout(300)

OpenTab = Callable[..., Tab]
TEXT = "Invoice 1234: 900 euros due by March 3."
SIZE = (800, 200)
ORIGIN = (24, 36)  # where ocr_rows.png draws its text


def drawn_box() -> tuple[float, float, float, float]:
    """Where png() draws TEXT, in the image's pixels."""
    x0, y0, x1, y1 = ImageFont.truetype(FONT, 18).getbbox(TEXT)
    return ORIGIN[0] + x0, ORIGIN[1] + y0, ORIGIN[0] + x1, ORIGIN[1] + y1


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union else 0.0


def _placed(tab: Tab, frame: Any) -> tuple[float, float, float, float]:
    """The image in ``frame`` has loaded; where its box element lies, in the image's own pixels."""
    img = frame.query_selector("img")
    assert tab.page.evaluate("(i) => i.complete && i.naturalWidth", img) == SIZE[0]
    at, marked = img.bounding_box(), frame.query_selector(".image-box").bounding_box()
    scale = SIZE[0] / at["width"]
    x, y = marked["x"] - at["x"], marked["y"] - at["y"]
    return x * scale, y * scale, (x + marked["width"]) * scale, (y + marked["height"]) * scale


def test_story_a_run_shows_the_image_its_answer_read_with_the_text_boxed(
    open_tab: OpenTab, web_server: str, tmp_path: Path,
) -> None:
    key = issue_key("admin")
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "invoice.png").write_bytes(png(TEXT, SIZE))
    _ingest(web_server, key, folder, "scans")  # read by OCR: the text, its box, the stored image
    with get_sessionmaker()() as s:
        chunk = s.scalars(select(Chunk).where(Chunk.image_ref == "image")).one()
        assert "1234" in chunk.text and chunk.bbox is not None
        stored = tuple(chunk.bbox)

    tab = open_tab(1440)
    page = tab.page
    sign_in(tab, key, then="/corpora/scans/ask")
    card = _ask(tab, "How much is due on invoice 1234?", strategy="retrieve")
    assert card.query_selector("a.citation").inner_text() == "scans/invoice.png (image)"
    run_url = card.query_selector("header a[href^='/runs/']").get_attribute("href")

    tab.go(run_url)  # the run's own page
    frame = page.wait_for_selector("[data-testid=cited-image] .image-frame")
    shown = _placed(tab, frame)
    assert all(abs(a - b) <= 3 for a, b in zip(shown, stored, strict=True)), (shown, stored)
    assert overlap(shown, drawn_box()) > 0.6, (shown, drawn_box())  # over the text itself
    tab.shot("run-cited-image")

    href = page.get_attribute("[data-testid=cited-image]", "href")
    assert href == "/corpora/scans/documents/scans/invoice.png/images/image"
    with page.context.expect_page() as opened:
        page.click("[data-testid=cited-image]")
    whole = opened.value
    whole.wait_for_load_state()
    assert whole.url.endswith(href)
    assert whole.evaluate("document.images.length && document.images[0].naturalWidth") == SIZE[0]

    tab.go("/corpora/scans/documents/scans/invoice.png")
    frame = page.wait_for_selector("[data-testid=document-image] .image-frame")
    assert overlap(_placed(tab, frame), drawn_box()) > 0.6
    tab.shot("document-images")


FILES = {"scans/invoice.txt": TEXT + "\n", "scans/images/readme.txt": "Pictures of the harbour.\n"}
IMAGE = "/corpora/scans/documents/scans/invoice.txt/images/image"


@pytest.fixture
def closed(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with keys required, and corpus "scans": an invoice read by OCR from a stored 400x100
    image of it (the box around its text), and a document in a folder named images."""
    monkeypatch.setenv("CORRAL_AUTH", "required")
    clear_caches()
    write_corpus("scans", FILES)
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def test_the_dashboards_images_need_a_session_of_the_corpus_workspace(closed: TestClient) -> None:
    data = mark_ocr(get_sessionmaker(), "scans", "scans/invoice.txt", 0, "image", data=png(TEXT))
    anonymous = closed.get(IMAGE, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/signin?next=")
    sign_in_client(closed, issue_key("admin", workspace="elsewhere"))
    assert closed.get(IMAGE).status_code == 404
    sign_in_client(closed, issue_key("read"))
    got = closed.get(IMAGE)
    assert got.status_code == 200 and got.content == data and got.headers["content-type"] == "image/png"
    for bad in (IMAGE.replace("/image", "/nope"), IMAGE.replace("/images/image", "/images/%2e%2e"),
                IMAGE.replace("invoice.txt", "nothere.txt"), IMAGE + "%00"):
        assert closed.get(bad).status_code == 404, bad
    # A document whose own path ends in /images/<name> is still its page.
    page = closed.get("/corpora/scans/documents/scans/images/readme.txt")
    assert page.status_code == 200 and "Pictures of the harbour." in page.text


def test_the_run_and_document_pages_place_the_box_over_the_image(closed: TestClient) -> None:
    mark_ocr(get_sessionmaker(), "scans", "scans/invoice.txt", 0, "image", data=png(TEXT))
    asked = closed.post("/v1/corpora/scans/ask", headers=bearer(issue_key("ask")),
                        json={"question": "How much is due on invoice 1234?", "strategy": "retrieve"})
    assert asked.status_code == 200, asked.text
    sign_in_client(closed, issue_key("read"))
    run = html.unescape(closed.get(f"/runs/{asked.json()['run_id']}").text)
    x0, y0, x1, y1 = BOX  # in a 400x100 image
    style = (f"left: {x0 / 4:.2f}%; top: {y0:.2f}%; width: {(x1 - x0) / 4:.2f}%; "
             f"height: {y1 - y0:.2f}%")
    assert f'<img src="{IMAGE}"' in run and f'style="{style}"' in run
    assert "scans/invoice.txt (image)</a>" in run
    doc = html.unescape(closed.get("/corpora/scans/documents/scans/invoice.txt").text)
    assert "1 image read by OCR" in doc and f'<img src="{IMAGE}"' in doc and f'style="{style}"' in doc
