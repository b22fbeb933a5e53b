"""Images become citable text: a user indexes screenshots, scans and documents with figures, and
gets chunks holding the words in them, each knowing its image, page and the box around its lines;
hostile images (bombs, truncated files, lies about their format, thousands of tiny images) each get
a clear reason of their own or cost a bounded time.

OCR on a CPU is slow: images are small and few, and one engine serves the whole module."""

from __future__ import annotations

import base64
import io
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from corral.core.db import Chunk, Document, DocumentImage, DocumentStatus, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.index import get_vector_store
from corral.core.services import get_corpus
from corral.ingestion.chunking import chunk_document
from corral.ingestion.ingest import ingest_now
from corral.ingestion.parsing import ParsedDocument, Rejected, parse_document
from corral.ingestion.parsing.figures import FigureReader
from corral.ingestion.parsing.images import ImageLimits
from corral.ingestion.sources import SourceDocument

LIMIT = 10 * 1024 * 1024
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
Box = tuple[int, int, int, int]


def render(lines: list[str], width: int = 640, size: int = 28) -> tuple[Image.Image, list[Box]]:
    """White image with ``lines`` in black; the box of each line as drawn."""
    font = ImageFont.truetype(FONT, size) if os.path.exists(FONT) else ImageFont.load_default(size)
    step = int(size * 1.8)
    image = Image.new("RGB", (width, step * len(lines) + size * 2), "white")
    draw = ImageDraw.Draw(image)
    boxes = []
    for i, line in enumerate(lines):
        xy = (size, size + i * step)
        draw.text(xy, line, fill="black", font=font)
        box = draw.textbbox(xy, line, font=font)
        boxes.append((int(box[0]), int(box[1]), int(box[2]), int(box[3])))
    return image, boxes


def png(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def parse(name: str, data: bytes) -> ParsedDocument | Rejected:
    """``data`` read as a file called ``name``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        return parse_document(SourceDocument.from_file(path, name), LIMIT)


def contains(outer: list[int] | tuple[int, ...] | None, inner: Box, slack: int = 3) -> bool:
    assert outer is not None
    return (outer[0] <= inner[0] + slack and outer[1] <= inner[1] + slack
            and outer[2] >= inner[2] - slack and outer[3] >= inner[3] - slack)


def _chunk_with(spans: list[Chunk], word: str) -> Chunk:
    found = [c for c in spans if word in c.text]
    assert found, f"no chunk holds {word!r}: {[c.text for c in spans]}"
    return found[0]


def _pdf_with_images(pages: list[tuple[str, Image.Image | None]]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text, image in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
        if image is not None:
            pdf.image(image, x=10, y=60 if text else 10, w=180)
    return bytes(pdf.output())


def _docx(before: str, image: Image.Image, after: str) -> bytes:
    import docx
    from docx.shared import Inches

    document = docx.Document()
    document.add_heading("Field report", level=1)
    document.add_paragraph(before)
    document.add_picture(io.BytesIO(png(image)), width=Inches(5))
    document.add_paragraph(after)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


@pytest.fixture
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    from corral.core.config import get_settings

    for key in list(os.environ):
        if key.startswith("CORRAL_") and not key.startswith(("CORRAL_TEST_", "CORRAL_REQUIRE")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


# --- the story through the real pipeline ----------------------------------------------------------


def test_folder_of_images_and_documents_with_figures_becomes_citable_chunks(
    corral_env: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    # A wide screenshot: stored scaled down to 1600 px, its boxes scaled with it.
    shot, shot_boxes = render(["Invoice total 4380 euros", "Payment due in March"], width=2000, size=56)
    (folder / "invoice.png").write_bytes(png(shot))
    scan1, _ = render(["Warehouse moved to Rotterdam"])
    scan2, _ = render(["Battery life reached fourteen hours"])
    (folder / "scan.pdf").write_bytes(_pdf_with_images([("", scan1), ("", scan2)]))
    figure, _ = render(["Revenue grew twelve percent"])
    (folder / "report.pdf").write_bytes(_pdf_with_images([
        ("Quarterly report. The first page is only text about the year.", None),
        ("The chart below shows the growth by region.", figure),
    ]))
    diagram, _ = render(["Pump pressure gauge"])
    (folder / "notes.docx").write_bytes(_docx("Before the picture.", diagram, "After the picture."))
    banner, _ = render(["Spring sale ends Friday"])
    (folder / "page.html").write_text(
        "<html><body><article><h1>News</h1><p>Our shop has news for everyone this week.</p>"
        f'<img alt="Sale banner" src="data:image/png;base64,{base64.b64encode(png(banner)).decode()}">'
        '<img alt="remote" src="https://example.invalid/never-fetched.png">'
        "</article></body></html>"
    )
    ensure_schema()
    started = time.perf_counter()
    report = ingest_now("reports", folder)
    print(f"ingest of 5 documents with 6 images: {time.perf_counter() - started:.1f} s")
    assert (report.indexed, report.failed, report.skipped) == (5, 0, 0), report.problems

    with session_scope() as s:
        corpus = get_corpus(s, "reports")
        docs = {d.path.rsplit("/", 1)[-1]: d for d in s.scalars(
            select(Document).where(Document.corpus_id == corpus.id))}
        chunks = {name: list(d.chunks) for name, d in docs.items()}
        images = {name: {im.ref: im for im in d.images} for name, d in docs.items()}

        # The screenshot: one stored image, scaled to 1600 px, and a chunk whose box holds the words.
        assert docs["invoice.png"].kind == "image"
        stored = images["invoice.png"]["image"]
        assert (stored.width, stored.height) == (1600, round(shot.height * 0.8))
        assert Image.open(io.BytesIO(stored.data)).size == (stored.width, stored.height)
        assert stored.mime in ("image/png", "image/jpeg") and stored.page is None
        chunk = _chunk_with(chunks["invoice.png"], "4380")
        assert "Invoice" in chunk.text and "March" in chunk.text
        assert (chunk.image_ref, chunk.symbol_kind, chunk.page) == ("image", "figure", None)
        scaled_box = tuple(round(v * 0.8) for v in shot_boxes[0])
        assert contains(chunk.bbox, scaled_box), (chunk.bbox, scaled_box)  # type: ignore[arg-type]
        assert chunk.bbox is not None and chunk.bbox[2] <= stored.width and chunk.bbox[3] <= stored.height

        # The scan: each page OCR'd as that page, with its own image.
        assert docs["scan.pdf"].page_count == 2
        first = _chunk_with(chunks["scan.pdf"], "Rotterdam")
        second = _chunk_with(chunks["scan.pdf"], "fourteen")
        assert (first.page, first.image_ref, first.symbol_kind) == (1, "p1-img1", "page")
        assert (second.page, second.image_ref) == (2, "p2-img1")
        assert {(r, im.page) for r, im in images["scan.pdf"].items()} == {("p1-img1", 1), ("p2-img1", 2)}

        # Text with a figure: the figure's words are a chunk of their own on its page.
        fig = _chunk_with(chunks["report.pdf"], "twelve")
        assert (fig.page, fig.image_ref, fig.symbol_kind, fig.symbol) == (2, "p2-img1", "figure", "p2-img1")
        assert "chart below" not in fig.text and fig.bbox is not None
        body = _chunk_with(chunks["report.pdf"], "chart below")
        assert body.image_ref is None and body.bbox is None
        assert set(images["report.pdf"]) == {"p2-img1"}

        # DOCX: the picture's text sits between the paragraphs around it, as a figure chunk.
        pump = _chunk_with(chunks["notes.docx"], "Pump")
        assert (pump.image_ref, pump.symbol_kind) == ("img1", "figure") and "After" not in pump.text
        text = "".join(c.text for c in chunks["notes.docx"])
        assert text.index("Before") < text.index("Pump") < text.index("After the picture")

        # HTML: a data: URI image is read (with its alt text); the remote one never is.
        sale = _chunk_with(chunks["page.html"], "Friday")
        assert "Sale banner" in sale.text and sale.image_ref == "img1" and sale.bbox is not None
        assert len(images["page.html"]) == 1 and "remote" not in text
        corpus_id, png_doc_id = corpus.id, docs["invoice.png"].id
        chunk_id = chunk.id

    # The vector store knows which image a hit came from.
    got = get_vector_store()._collection(corpus_id).get(ids=[chunk_id], include=["metadatas"])  # type: ignore[attr-defined]
    assert got["metadatas"][0]["image_ref"] == "image"

    # Re-ingesting a changed image replaces its stored image; removing it removes the image too.
    changed, _ = render(["Invoice total 5120 euros"], width=800)
    (folder / "invoice.png").write_bytes(png(changed))
    again = ingest_now("reports", folder)
    assert again.indexed == 1
    with session_scope() as s:
        rows = list(s.scalars(select(DocumentImage).where(DocumentImage.document_id == png_doc_id)))
        assert [(r.ref, r.width) for r in rows] == [("image", 800)]
        assert any("5120" in c.text for c in s.scalars(select(Chunk).where(Chunk.document_id == png_doc_id)))
    (folder / "invoice.png").unlink()
    ingest_now("reports", folder)
    with session_scope() as s:
        assert not list(s.scalars(select(DocumentImage).where(DocumentImage.document_id == png_doc_id)))


# --- formats and orientation, parsed directly --------------------------------------------------------


def test_photo_is_read_by_its_content_and_upright(settings_env: pytest.MonkeyPatch) -> None:
    """A phone photo: a JPEG (named .png) stored sideways with an EXIF orientation tag."""
    upright, _ = render(["Harbour crane schedule"])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    sideways = upright.rotate(90, expand=True)  # what a phone writes with that tag
    got = parse("photo.png", png(sideways, "JPEG", quality=90, exif=exif.tobytes()))
    assert isinstance(got, ParsedDocument) and got.kind.kind == "image", got
    assert "crane" in got.text and got.images[0].ref == "image"
    assert (got.images[0].width, got.images[0].height) == upright.size


def test_a_small_charts_sparse_labels_are_all_read(settings_env: pytest.MonkeyPatch) -> None:
    """A 700 px bar chart whose values sit just over the bars: every value and label is read, each
    box where it was drawn (the image is scaled up for reading; the boxes are not)."""
    chart = Image.new("RGB", (700, 420), "white")
    draw = ImageDraw.Draw(chart)
    font = ImageFont.truetype(FONT, 22) if os.path.exists(FONT) else ImageFont.load_default(22)
    drawn: dict[str, Box] = {}
    for i, (label, value) in enumerate([("Q1", 120), ("Q2", 180), ("Q3", 95), ("Q4", 210)]):
        x = 80 + i * 150
        draw.rectangle((x, 380 - value, x + 80, 380), fill=(70, 110, 200))
        for text, at in ((label, (x + 20, 385)), (str(value), (x + 15, 350 - value))):
            draw.text(at, text, fill="black", font=font)
            box = draw.textbbox(at, text, font=font)
            drawn[text] = (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
    got = parse("tickets.png", png(chart))
    assert isinstance(got, ParsedDocument), got
    assert set(got.text.split()) >= set(drawn), got.text
    [block] = got.ocr
    lines = got.text.split("\n")
    for i, box in enumerate(block.boxes):
        for word in lines[block.start_line + i].split():
            if word in drawn and box is not None:
                assert contains(box, drawn[word], slack=6), (word, box, drawn[word])


def test_multi_page_tiff_keeps_a_page_per_frame(settings_env: pytest.MonkeyPatch) -> None:
    one, _ = render(["Chapter one opens"])
    two, _ = render(["Chapter two closes"])
    buf = io.BytesIO()
    one.save(buf, format="TIFF", save_all=True, append_images=[two])
    got = parse("book.tiff", buf.getvalue())
    assert isinstance(got, ParsedDocument) and got.page_count == 2, got
    spans = chunk_document(got, 400)
    pages = {s.page: (s.image_ref, s.text) for s in spans}
    assert pages[1][0] == "p1-img1" and "one" in pages[1][1]
    assert pages[2][0] == "p2-img1" and "two" in pages[2][1]


def test_a_letterhead_on_every_page_is_read_once(settings_env: pytest.MonkeyPatch) -> None:
    logo, _ = render(["Acme Shipping Company"])
    got = parse("letters.pdf", _pdf_with_images([
        ("First letter: the crates arrive on Monday.", logo),
        ("Second letter: the crates left on Friday.", logo),
    ]))
    assert isinstance(got, ParsedDocument), got
    assert [(im.ref, im.page) for im in got.images] == [("p1-img1", 1)]
    assert got.text.count("Acme") == 1


def test_image_without_text_is_skipped_with_a_reason(settings_env: pytest.MonkeyPatch) -> None:
    got = parse("blank.png", png(Image.new("RGB", (120, 80), "white")))
    assert isinstance(got, Rejected) and got.status is DocumentStatus.SKIPPED
    assert got.reason == "no text found in this image document"


def test_ocr_can_be_turned_off(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("CORRAL_OCR_ENABLED", "false")
    image, _ = render(["Never read"])
    got = parse("off.png", png(image))
    assert isinstance(got, Rejected) and got.status is DocumentStatus.SKIPPED and "OCR" in got.reason


def test_the_ocr_engine_loads_its_wheels_models_and_never_touches_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    import rapidocr
    from rapidocr.utils.download_file import DownloadFile

    from corral.ingestion.parsing.ocr import RapidOcrEngine

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("OCR tried to reach the network")

    monkeypatch.setattr(DownloadFile, "run", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    engine = RapidOcrEngine()
    image, boxes = render(["Offline words"])
    lines = engine.read_image(image)
    assert [line.text for line in lines] == ["Offline words"]
    assert contains(lines[0].box, boxes[0]) and 0.5 < lines[0].score <= 1
    wheel = Path(rapidocr.__file__).resolve().parent / "models"
    for stage in ("Det", "Cls", "Rec"):
        assert Path(engine._ocr.cfg[stage].model_path).parent == wheel


# --- hostile images -----------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A bilevel PNG whose header claims ``width`` x ``height``: a few hundred bytes on disk."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 64)  # far fewer rows than claimed: never decoded anyway
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows)
            + _png_chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_before_decoding(settings_env: pytest.MonkeyPatch) -> None:
    bomb = _png_claiming(50_000, 50_000)
    started = time.perf_counter()
    got = parse("bomb.png", bomb)
    seconds = time.perf_counter() - started
    print(f"50k x 50k PNG ({len(bomb)} bytes) refused in {seconds * 1000:.1f} ms")
    assert isinstance(got, Rejected) and got.status is DocumentStatus.FAILED, got
    assert "decompression bomb" in got.reason and "40000000-pixel limit" in got.reason
    assert seconds < 2


def test_pixel_limit_is_a_setting_and_pillows_own(settings_env: pytest.MonkeyPatch) -> None:
    from PIL import Image as PILImage

    settings_env.setenv("CORRAL_IMAGE_MAX_PIXELS", "10000")
    image, _ = render(["Too many pixels"])
    got = parse("big.png", png(image))
    assert isinstance(got, Rejected) and "10000-pixel limit" in got.reason
    assert PILImage.MAX_IMAGE_PIXELS == 10000


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("truncated.png", "truncated", "truncated or corrupt image"),
        ("notes.png", b"These are meeting notes, not a picture.\n" * 20, "not a readable image"),
        ("noise.jpg", bytes(range(256)) * 40, "not a readable image"),
        ("empty.png", b"", "empty image file"),
        ("zero.png", "zero", "image has no pixels (0x10)"),
        ("header.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "corrupt PNG image"),
    ],
)
def test_broken_images_fail_alone_with_a_reason(
    settings_env: pytest.MonkeyPatch, name: str, data: bytes | str, reason: str
) -> None:
    if data == "truncated":
        image, _ = render(["Cut short"])
        whole = png(image)
        data = whole[: len(whole) // 2]
    elif data == "zero":
        data = _png_claiming(0, 10)
    assert isinstance(data, bytes)
    got = parse(name, data)
    assert isinstance(got, Rejected) and got.status is DocumentStatus.FAILED, got
    assert reason in got.reason, got.reason


def test_animated_gif_reads_only_its_first_frame(settings_env: pytest.MonkeyPatch) -> None:
    frames = [Image.new("P", (64, 64), i % 256) for i in range(600)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=10, loop=0)
    started = time.perf_counter()
    got = parse("spinner.gif", buf.getvalue())
    seconds = time.perf_counter() - started
    print(f"600-frame GIF: {seconds:.2f} s")
    assert isinstance(got, Rejected) and got.reason == "no text found in this image document"
    assert seconds < 10


def _raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF from numbered object bodies (object 1 is the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _pdf_with_tiny_images(n: int) -> bytes:
    """One page of text drawing ``n`` distinct 2x2 images, and one image whose dictionary claims
    50,000 x 50,000 pixels over a deflated stream of a megabyte of zeros (a bomb, if decoded)."""
    first_image = 7
    names = b"/Bomb 6 0 R " + b" ".join(b"/Im%d %d 0 R" % (i, first_image + i) for i in range(n))
    zeros = zlib.compress(bytes(1 << 20), 9)
    draws = b"".join(b"q 4 0 0 4 %d %d cm /Im%d Do Q\n" % (10 + i % 140 * 4, 10 + i // 140 * 4, i)
                     for i in range(n))
    content = b"BT /F1 14 Tf 72 760 Td (Catalogue of ten thousand icons) Tj ET\n" + draws
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << " + names + b" >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Image /Width 50000 /Height 50000 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n" % len(zeros) + zeros
        + b"\nendstream",
    ]
    for i in range(n):
        pixels = bytes([i % 256, (i // 256) % 256, 7, 9])
        objects.append(b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
                       b"/BitsPerComponent 8 /Length 4 >>\nstream\n" + pixels + b"\nendstream")
    return _raw_pdf(objects)


def test_pdf_with_ten_thousand_tiny_images_costs_bounded_time(settings_env: pytest.MonkeyPatch) -> None:
    data = _pdf_with_tiny_images(10_000)
    started = time.perf_counter()
    got = parse("icons.pdf", data)
    seconds = time.perf_counter() - started
    print(f"PDF with 10,000 tiny images and a bomb ({len(data) // 1024} KiB): parsed in {seconds:.2f} s")
    assert isinstance(got, ParsedDocument), got
    assert "Catalogue" in got.text and got.images == () and got.ocr == ()
    assert seconds < 30


def test_bomb_inside_a_document_skips_the_figure_and_keeps_the_text(
    settings_env: pytest.MonkeyPatch,
) -> None:
    bomb = base64.b64encode(_png_claiming(50_000, 50_000)).decode()
    page = (f"<html><body><article><p>The text around a hostile image is still indexed.</p>"
            f'<img src="data:image/png;base64,{bomb}"><img src="data:image/png;base64,!!!notbase64">'
            "</article></body></html>").encode()
    got = parse("hostile.html", page)
    assert isinstance(got, ParsedDocument), got
    assert "hostile image" in got.text and got.images == ()


def test_caps_decide_before_anything_is_decoded() -> None:
    reader = FigureReader(ImageLimits(per_page=2, per_document=3, min_side=32, min_pixels=2048,
                                      max_pixels=1_000_000))
    assert not reader.admits(16, 400, 1)  # too thin to hold text
    assert not reader.admits(40, 40, 1)  # too small an area
    assert not reader.admits(2000, 2000, 1)  # over the pixel limit
    blank = Image.new("RGB", (100, 100), "white")
    for _ in range(2):
        assert reader.admits(100, 100, 1)
        assert reader.read(blank, "p1-img", 1) is None  # read (no text on it), and counted
    assert not reader.admits(100, 100, 1) and reader.admits(100, 100, 2)  # page 1 is full
    reader.read(blank, "p2-img", 2)
    assert not reader.admits(100, 100, 3)  # the document is full
    assert reader.read_count == 3 and len(reader.skipped) == 3
