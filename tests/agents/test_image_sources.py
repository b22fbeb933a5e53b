"""Text read from images by OCR, as a reader and a vision model meet it: cited by its image
(``report.pdf p.4 (figure)``), named to the model as OCR text, and — for a backend declared to take
images — sent beside the question as the stored image itself, within the caps."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from corral.agents.ask import AskOptions, AskResult, Strategy, ask
from corral.agents.citations import CITED, Citation
from corral.agents.retrieval import Passage, source_name
from corral.core.config import Settings
from tests.agents.ocr_rows import BOX, mark_ocr
from tests.agents.scripted import Corpora, ScriptedChat, WordSearcher, scripted

REPORT = ("Quarterly report\n\nSales were steady in the first half.\n\n"
          "Figure: revenue rose to 42 million in Q4.\n")
FILES = {
    "report.pdf": REPORT,
    "scan.png": "Invoice number 1234 is due on March 3.\n",
    "scan.pdf": "The scanned lease says the rent is 900 euros.\n",
}


def mark(corpora: Corpora, path: str, ordinal: int, ref: str, **kw: Any) -> bytes:
    return mark_ocr(corpora.sessions, "docs", path, ordinal, ref, **kw)


def ocr_corpus(corpora: Corpora) -> dict[str, bytes]:
    corpora.add("docs", FILES, max_chars=45)
    return {"figure": mark(corpora, "report.pdf", 2, "p4-img1", page=4, kind="figure"),
            "image": mark(corpora, "scan.png", 0, "image"),
            "scan": mark(corpora, "scan.pdf", 0, "p2", page=2)}


def run(corpora: Corpora, question: str, chat: ScriptedChat, **options: Any) -> AskResult:
    return ask(corpora.sessions, "docs", question, chat=chat, searcher=WordSearcher(),
               options=AskOptions(**{"max_new_tokens": 32, **options}), strategy=Strategy.RETRIEVE)


def user_content(chat: ScriptedChat) -> Any:
    """What the first answer call's user message carried: a string, or content parts."""
    messages, _ = chat.seen[0]
    return messages[-1].content


def image_parts(content: Any) -> list[bytes]:
    if isinstance(content, str):
        return []
    out = []
    for part in content:
        if part.get("type") == "image_url":
            url = part["image_url"]["url"]
            assert url.startswith("data:image/png;base64,"), url[:40]
            out.append(base64.b64decode(url.split(",", 1)[1], validate=True))
    return out


def test_a_figure_is_cited_by_its_image_and_the_model_told_it_reads_ocr_text(corpora: Corpora) -> None:
    ocr_corpus(corpora)
    chat = scripted("Revenue rose to 42 million in Q4 [2].")
    result = run(corpora, "How much did revenue rise to in Q4?", chat)
    prompt = user_content(chat)
    assert "[2] report.pdf:5-5 (p.4 figure, OCR text)\nFigure: revenue rose to 42 million" in prompt
    assert "[1] report.pdf:1-3\n" in prompt  # the text around the figure is a passage of its own
    cited = next(c for c in result.citations if c.support == CITED)
    assert (cited.display, cited.label) == ("report.pdf p.4 (figure)", "report.pdf:5-5")
    assert (cited.image_ref, cited.bbox, cited.figure, cited.page) == ("p4-img1", tuple(BOX), True, 4)
    stored = result.to_dict()["citations"]
    assert stored[0]["display"] == "report.pdf p.4 (figure)" and stored[0]["bbox"] == BOX
    text = next(c for c in result.citations if c.label == "report.pdf:1-3")
    assert text.display == "report.pdf:1-3" and text.image_ref is None and text.bbox is None


def test_image_files_and_scanned_pages_are_named_as_such() -> None:
    assert source_name("scan.png", None, "image", False) == "scan.png (image)"
    assert source_name("scan.png", None, "image", True) == "scan.png (image)"  # as the chunker labels it
    assert source_name("scan.pdf", 2, "p2", False) == "scan.pdf p.2 (scan)"
    assert source_name("notes.md", 3, None, False) is None
    scan = Citation("scan.pdf", 4, 9, 0.5, True, True, page=2, image_ref="p2", bbox=(1, 2, 3, 4))
    assert scan.display == "scan.pdf p.2 (scan)" and scan.label == "scan.pdf:4-9"
    assert Citation("[7]", 0, 0, None, True, False).display == "[7]"  # a number naming no source
    p = Passage(3, "scan.png", 1, 1, "Invoice", 2, image_ref="image")
    assert p.header == "scan.png:1-1 (image, OCR text)" and p.label == "scan.png:1-1"


def test_a_stuffed_image_file_keeps_its_image_and_a_malformed_box_is_dropped(corpora: Corpora) -> None:
    corpora.add("docs", FILES, max_chars=45)
    mark(corpora, "scan.png", 0, "image", bbox=["x", None, 3])  # a box no code could have written
    chat = scripted("The invoice is due on March 3 [3].")
    result = ask(corpora.sessions, "docs", "When is invoice 1234 due?", chat=chat, searcher=WordSearcher(),
                 options=AskOptions(max_new_tokens=32))
    assert result.strategy == "stuff"
    assert "[3] scan.png:1-1 (image, OCR text)" in user_content(chat)
    cited = next(c for c in result.citations if c.support == CITED)
    assert cited.display == "scan.png (image)" and cited.bbox is None


def test_a_vision_backend_gets_the_cited_images_beside_the_question(corpora: Corpora) -> None:
    images = ocr_corpus(corpora)
    chat = scripted("Revenue rose to 42 million in Q4 [2].")
    result = run(corpora, "How much did revenue rise to in Q4?", chat, vision=True)
    content = user_content(chat)
    sent = image_parts(content)
    assert sent == [images["figure"]]
    assert Image.open(io.BytesIO(sent[0])).size == (400, 100)
    texts = [p["text"] for p in content if p["type"] == "text"]
    assert "Question: How much did revenue rise" in texts[0]  # the sources and question come first
    assert "[2] report.pdf p.4 (figure)" in texts[1]  # then each image, named
    [step] = [s for s in result.steps if s["step"] == "images"]
    assert step["sent"] == 1 and step["refs"] == ["report.pdf#p4-img1"] and step["bytes"] == len(sent[0])


def test_without_vision_only_the_ocr_text_goes(corpora: Corpora) -> None:
    ocr_corpus(corpora)
    chat = scripted("Revenue rose to 42 million in Q4 [2].")
    result = run(corpora, "How much did revenue rise to in Q4?", chat)
    assert isinstance(user_content(chat), str) and "revenue rose to 42 million" in user_content(chat)
    assert not [s for s in result.steps if s["step"] == "images"]


def test_the_embedded_engine_never_gets_images_whatever_is_declared() -> None:
    assert not AskOptions.from_settings(Settings(chat_vision=True)).vision
    remote = Settings(chat_vision=True, chat_backend="openai", openai_base_url="http://x/v1",
                      openai_model="m", chat_context_window=8192, chat_vision_max_images=2)
    opts = AskOptions.from_settings(remote)
    assert opts.vision and opts.vision_max_images == 2


def test_a_run_reading_many_figures_sends_no_more_than_the_caps(corpora: Corpora) -> None:
    files = {f"fig{i:02d}.pdf": f"Chart {i}: the harbour crane lifted {i} tonnes.\n" for i in range(40)}
    corpora.add("docs", files)
    sizes = [len(mark(corpora, path, 0, "p1-img1", page=1, kind="figure")) for path in sorted(files)]
    question = "How many tonnes did the harbour crane lift?"
    chat = scripted("It lifted 3 tonnes [4].", window=32768)
    result = run(corpora, question, chat, vision=True, vision_max_images=3)
    assert len(image_parts(user_content(chat))) == 3
    [step] = [s for s in result.steps if s["step"] == "images"]
    assert step["sent"] == 3 and len(step["left_out"]) == 20  # the rest named (the first 20)
    assert "over the 3-image cap" in step["left_out"][0]

    chat = scripted("It lifted 3 tonnes [4].", window=32768)
    run(corpora, question, chat, vision=True, vision_max_images=10, vision_max_bytes=max(sizes))
    assert len(image_parts(user_content(chat))) == 1  # the bytes cap binds first
    chat = scripted("It lifted 3 tonnes [4].", window=32768)
    run(corpora, question, chat, vision=True, vision_max_images=0)
    assert image_parts(user_content(chat)) == []


def test_images_never_push_the_text_read_out_of_a_small_window(corpora: Corpora) -> None:
    files = {f"fig{i:02d}.pdf": f"Chart {i}: the harbour crane lifted {i} tonnes.\n" for i in range(40)}
    corpora.add("docs", files)
    for path in files:
        mark(corpora, path, 0, "p1-img1", page=1, kind="figure")
    question = "How many tonnes did the harbour crane lift?"
    plain = scripted("It lifted 3 tonnes [4].")
    run(corpora, question, plain)
    seen = scripted("It lifted 3 tonnes [4].")
    result = run(corpora, question, seen, vision=True, vision_max_images=8, vision_image_tokens=600)
    content = user_content(seen)
    # The window of 2,048 tokens loses at most a quarter to images: what is read stays.
    read = {p.split("\n", 1)[0] for p in user_content(plain).split("\n\n") if p.startswith("[")}
    kept = {p.split("\n", 1)[0] for p in content[0]["text"].split("\n\n") if p.startswith("[")}
    assert len(kept) >= 0.75 * len(read) > 0
    [step] = [s for s in result.steps if s["step"] == "images"]
    assert step["sent"] == len(image_parts(content)) and step["sent"] * 600 <= step["room"]


def test_a_one_page_scan_read_whole_is_cited_by_its_page(corpora: Corpora) -> None:
    corpora.add("docs", {"notes.md": "Unrelated notes.\n", "scan.pdf": "The lease: rent 900 euros.\n"})
    mark(corpora, "scan.pdf", 0, "p2", page=2)
    chat = scripted("The rent is 900 euros [2].")
    result = ask(corpora.sessions, "docs", "What rent does the lease say?", chat=chat,
                 searcher=WordSearcher(), options=AskOptions(max_new_tokens=32))
    assert result.strategy == "stuff"
    assert "scan.pdf:1-1 (p.2 scan, OCR text)" in user_content(chat), user_content(chat)
    cited = next(c for c in result.citations if c.support == CITED)
    assert cited.display == "scan.pdf p.2 (scan)", result.citations
    assert [c.display for c in result.citations].count("scan.pdf p.2 (scan)") == 1
