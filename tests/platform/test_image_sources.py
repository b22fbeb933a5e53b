"""OCR'd sources through the platform: a run's citations of text read from an image link to the
stored image (``image_url``, served to keys that may read the corpus and to no one else), and a remote
backend declared to take images (``CORRAL_CHAT_VISION``) is sent them — checked against a local
OpenAI-compatible server that keeps what it was sent."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from corral.agents.ask import Strategy
from corral.core.db import get_sessionmaker
from corral.platform import composition
from corral.platform.api.app import create_app
from corral.platform.composition import answer
from tests.agents.guard_server import FakeGuard
from tests.agents.ocr_rows import BOX, mark_ocr
from tests.conftest import bearer, clear_caches, issue_key
from tests.platform.test_ask_end_to_end import write_corpus

FILES = {
    "report.pdf": ("Quarterly report\n\nSales were steady in the first half.\n\n"
                   "Figure: revenue rose to 42 million in Q4.\n"),
    "scan.png": "Invoice number 1234 is due on March 3.\n",
}
QUESTION = "How much did revenue rise to in Q4?"


@pytest.fixture
def docs(corral_env: Path) -> dict[str, bytes]:
    """Corpus "docs": a report whose third paragraph was read from a figure on page 4, and an image
    file; real embeddings, the images real PNGs of their text."""
    write_corpus("docs", FILES, max_chars=45)
    sessions = get_sessionmaker()
    return {"figure": mark_ocr(sessions, "docs", "report.pdf", 2, "p4-img1", page=4, kind="figure"),
            "image": mark_ocr(sessions, "docs", "scan.png", 0, "image")}


@pytest.fixture
def client(docs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CORRAL_AUTH", "required")
    clear_caches()
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def test_a_citation_of_a_figure_links_to_its_image(client: TestClient, docs: dict[str, bytes]) -> None:
    key = bearer(issue_key("ask", "read"))
    r = client.post("/v1/corpora/docs/ask", json={"question": QUESTION, "strategy": "retrieve"}, headers=key)
    assert r.status_code == 200, r.text
    figure = next(c for c in r.json()["citations"] if c["image_ref"] == "p4-img1")
    assert figure["display"] == "report.pdf p.4 (figure)" and figure["label"] == "report.pdf:5-5"
    assert figure["bbox"] == BOX and figure["figure"] is True and figure["page"] == 4
    assert figure["image_url"] == "/v1/corpora/docs/documents/report.pdf/images/p4-img1"
    text = next(c for c in r.json()["citations"] if c["label"] == "report.pdf:1-3")
    assert text["image_url"] is None and text["display"] == "report.pdf:1-3"
    # The stored run says the same.
    run = client.get(f"/v1/runs/{r.json()['run_id']}", headers=key).json()
    assert [c["image_url"] for c in run["citations"]] == [c["image_url"] for c in r.json()["citations"]]

    image = client.get(figure["image_url"], headers=key)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == docs["figure"] and Image.open(io.BytesIO(image.content)).size == (400, 100)
    assert image.headers["x-content-type-options"] == "nosniff"


def test_an_image_is_served_to_readers_of_its_corpus_only(client: TestClient, docs: dict[str, bytes]) -> None:
    url = "/v1/corpora/docs/documents/scan.png/images/image"
    assert client.get(url, headers=bearer(issue_key("read"))).content == docs["image"]
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer(issue_key("ask"))).status_code == 403
    other = bearer(issue_key("admin", workspace="elsewhere"))
    missing = client.get(url, headers=other)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


@pytest.mark.parametrize("url", [
    "/v1/corpora/docs/documents/scan.png/images/p9",  # no such image
    "/v1/corpora/docs/documents/report.pdf/images/image",  # another document's ref
    "/v1/corpora/docs/documents/nothere.png/images/image",
    "/v1/corpora/docs/documents/scan.png/images/%2e%2e",
    "/v1/corpora/docs/documents/scan.png/images/..%2f..%2fetc%2fpasswd",
    "/v1/corpora/docs/documents/../scan.png/images/image",
    "/v1/corpora/docs/documents/scan.png/images/" + "x" * 5000,
    "/v1/corpora/docs/documents/scan.png/images/im%00age",
])
def test_unknown_or_crafted_image_refs_are_not_found(client: TestClient, url: str) -> None:
    r = client.get(url, headers=bearer(issue_key("read")))
    assert r.status_code in (404, 422), (url, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")


def test_a_stored_image_of_an_unsafe_type_is_sent_as_bytes_to_download(client: TestClient) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    write_corpus("vectors", {"logo.svg": "Logo of the harbour company.\n"})
    mark_ocr(get_sessionmaker(), "vectors", "logo.svg", 0, "image", data=svg, mime="image/svg+xml")
    r = client.get("/v1/corpora/vectors/documents/logo.svg/images/image", headers=bearer(issue_key("read")))
    assert r.status_code == 200 and r.content == svg
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "attachment"


def _remote(monkeypatch: pytest.MonkeyPatch, url: str, **extra: str) -> None:
    monkeypatch.setenv("CORRAL_CHAT_BACKEND", "openai")
    monkeypatch.setenv("CORRAL_OPENAI_BASE_URL", url)
    monkeypatch.setenv("CORRAL_OPENAI_MODEL", "llama-4-scout")
    monkeypatch.setenv("CORRAL_CHAT_CONTEXT_WINDOW", "16384")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    clear_caches()
    composition._remote_chat.cache_clear()


def _images(request: dict[str, Any]) -> list[tuple[str, bytes]]:
    content = request["messages"][-1]["content"]
    if isinstance(content, str):
        return []
    return [(p["image_url"]["url"].split(",", 1)[0],
             base64.b64decode(p["image_url"]["url"].split(",", 1)[1], validate=True))
            for p in content if p["type"] == "image_url"]


def test_a_vision_backend_is_sent_the_images_of_the_ocr_text_it_reads(
    docs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeGuard("Revenue rose to 42 million in Q4 [2].") as server:
        _remote(monkeypatch, server.url, CORRAL_CHAT_VISION="true")
        try:
            result = answer("docs", QUESTION, Strategy.RETRIEVE)
        finally:
            composition._remote_chat.cache_clear()
    sent = _images(server.requests[0])
    assert ("data:image/png;base64", docs["figure"]) in sent
    assert all(Image.open(io.BytesIO(data)).format == "PNG" for _, data in sent)
    content = server.requests[0]["messages"][-1]["content"]
    assert "(p.4 figure, OCR text)" in content[0]["text"] and f"Question: {QUESTION}" in content[0]["text"]
    [step] = [s for s in result.steps if s["step"] == "images"]
    assert "report.pdf#p4-img1" in step["refs"] and step["bytes"] == sum(len(d) for _, d in sent)


def test_without_vision_the_backend_gets_the_ocr_text_only(
    docs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeGuard("Revenue rose to 42 million in Q4 [2].") as server:
        _remote(monkeypatch, server.url)
        try:
            result = answer("docs", QUESTION, Strategy.RETRIEVE)
        finally:
            composition._remote_chat.cache_clear()
    assert server.requests and all(_images(r) == [] for r in server.requests)
    content = server.requests[0]["messages"][-1]["content"]
    assert isinstance(content, str) and "revenue rose to 42 million" in content
    assert not [s for s in result.steps if s["step"] == "images"]
    assert "base64" not in json.dumps(server.requests)


def test_slack_and_the_cli_name_an_ocr_source_by_its_image() -> None:
    from corral.agents.ask import AskResult
    from corral.agents.citations import Citation
    from corral.platform.cli.commands.ask_cmd import console, print_answer
    from corral.platform.slack.render import sources

    figure = Citation("report.pdf", 5, 5, 0.9, True, True, page=4, support="cited", image_ref="p4-img1",
                      bbox=(20, 30, 380, 70), figure=True)
    text = Citation("notes.md", 1, 3, 0.5, True, True, support="cited")
    shown = sources([figure.to_dict(), text.to_dict()], "docs", "https://corral.example.com")
    assert "/documents/report.pdf#L5-L5|report.pdf p.4 (figure)>" in shown
    assert "|notes.md:1-3>" in shown
    result = AskResult(run_id="r", corpus="docs", question="q?", answer="Revenue rose [1].",
                       strategy="retrieve", reason="", model="m", estimated_tokens=0, prompt_tokens=0,
                       completion_tokens=0, seconds=0.1, citations=[figure, text])
    with console.capture() as out:
        print_answer(result)
    assert "- report.pdf p.4 (figure)  [cited]" in out.get() and "- notes.md:1-3  [cited]" in out.get()
