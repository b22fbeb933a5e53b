"""Credentials in a codebase: found at ingest and redacted from everything stored — chunk rows, the
keyword index, the vector store, and so what the tools read — with line numbers unchanged, counted
per chunk, kept only when the workspace opts in; ordinary code is left alone; hostile input costs
bounded time.

The planted credentials are assembled at run time: they have the shape of real ones, and none is
written whole in this file.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import string
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from corral.agents.tools import CorpusReader
from corral.core.db import Chunk, Document, Workspace, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.db.session import get_sessionmaker
from corral.core.index import get_keyword_index, get_vector_store
from corral.core.redaction import CONTINUATION, count_redactions, marker
from corral.core.services import get_corpus
from corral.ingestion.ingest import ingest_now
from corral.ingestion.parsing.read import ParsedDocument, read_document
from corral.ingestion.safety import MAX_LINE_CHARS, clean_document, find_secrets, redact_text
from corral.ingestion.safety.secrets import PRIVATE_KEY

_rng = random.Random(16)


def _chars(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64url(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


AWS_ID = "AKIA" + _chars(16, string.ascii_uppercase + string.digits)
AWS_SECRET = _chars(40, string.ascii_letters + string.digits + "/+")
GITHUB = "ghp" + "_" + _chars(36)
SLACK = "xo" + "xb-" + "".join(_chars(12, string.digits)) + "-" + _chars(13, string.digits) + "-" + \
    _chars(24, string.ascii_lowercase + string.digits)
JWT = f"{_b64url({'alg': 'HS256', 'typ': 'JWT'})}.{_b64url({'sub': '42', 'name': 'Ann'})}." + \
    _chars(43, string.ascii_letters + string.digits + "-_")
DB_PASSWORD = _chars(18)
STRIPE = "sk" + "_live_" + _chars(24)
KEY_BODY = [_chars(64, string.ascii_letters + string.digits + "+/") for _ in range(5)]
PLANTED = [AWS_ID, AWS_SECRET, GITHUB, SLACK, JWT, DB_PASSWORD, STRIPE, *KEY_BODY]

SETTINGS = f'''"""Deployment settings."""

AWS_ACCESS_KEY_ID = "{AWS_ID}"
aws_secret_access_key = "{AWS_SECRET}"
GITHUB_TOKEN = "{GITHUB}"
SLACK_BOT = "{SLACK}"
SESSION = "{JWT}"
DATABASE_URL = "postgres://app:{DB_PASSWORD}@db.internal:5432/app"
STRIPE = "{STRIPE}"

DEPLOY_KEY = """-----BEGIN RSA PRIVATE KEY-----
{chr(10).join(KEY_BODY)}
-----END RSA PRIVATE KEY-----"""


def after_key() -> str:
    return "the line numbers below the key are the file's own"
'''
AFTER_KEY_LINE = SETTINGS.split("\n").index("def after_key() -> str:") + 1

ORDINARY = '''"""Test fixtures: nothing here is a credential."""
import os
import uuid

EXPECTED_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
password = os.environ["PASSWORD"]
api_key = settings.get_key()
db_password = "${DB_PASSWORD}"
REQUEST_ID = "3f2b8c1e-2d4a-4f6b-9c0d-1e2f3a4b5c6d"
PAYLOAD = "aGVsbG8gd29ybGQsIHRoaXMgaXMganVzdCB0ZXN0IGRhdGEgZm9yIGEgcGFyc2VyIHRlc3Q="
FAKE_SECRET = "<your secret here>"
'''


# -- the detector and the redaction on their own ----------------------------------------------------

def test_each_planted_credential_is_found_and_named() -> None:
    found = find_secrets(SETTINGS, "settings.py")
    kinds = [f.kind for f in found]
    assert kinds == ["AWS access key", "AWS access key", "GitHub token", "Slack token", "JSON web token",
                     "password in URL", "Stripe key", PRIVATE_KEY], kinds
    secrets = [SETTINGS[f.start:f.end] for f in found[:-1]]
    assert secrets == [AWS_ID, AWS_SECRET, GITHUB, SLACK, JWT, DB_PASSWORD, STRIPE]
    assert all(line in SETTINGS[found[-1].start:found[-1].end] for line in KEY_BODY)


def test_redaction_keeps_every_line_where_it_was() -> None:
    red = redact_text(SETTINGS, path="settings.py")
    assert not any(s in red.text for s in PLANTED)
    assert red.text.count("\n") == SETTINGS.count("\n")
    before, after = SETTINGS.split("\n"), red.text.split("\n")
    begin = before.index('DEPLOY_KEY = """-----BEGIN RSA PRIVATE KEY-----')
    assert after[begin] == before[begin] and after[begin + 6] == before[begin + 6]  # BEGIN and END stay
    assert after[begin + 1] == marker(PRIVATE_KEY) and after[begin + 2 : begin + 6] == [CONTINUATION] * 4
    assert after[AFTER_KEY_LINE - 1] == "def after_key() -> str:"
    assert f'GITHUB_TOKEN = "{marker("GitHub token")}"' in after
    assert "postgres://app:[REDACTED password in URL]@db.internal:5432/app" in red.text
    assert count_redactions(red.text) == 8 and len(red.positions) == 8


def test_ordinary_code_is_not_redacted() -> None:
    """A sha256 in a fixture, a password read from the environment, a templated or placeholder
    value, a UUID, base64 test data: none is a credential, and none is touched."""
    assert find_secrets(ORDINARY, "fixtures.py") == []
    assert redact_text(ORDINARY, path="fixtures.py").text == ORDINARY


def test_every_password_of_a_one_line_config_is_found() -> None:
    first, second = _chars(14), _chars(16)
    line = f'{{"db_password": "{first}", "name": "app", "api_key": "{second}"}}'
    red = redact_text(line, path="config.json")
    assert first not in red.text and second not in red.text and len(red.positions) == 2
    assert red.text == '{"db_password": "[REDACTED secret]", "name": "app", "api_key": "[REDACTED secret]"}'


def test_a_kept_document_is_counted_but_unchanged() -> None:
    red = redact_text(SETTINGS, path="settings.py", keep=True)
    assert red.text == SETTINGS and len(red.positions) == 8


def test_page_offsets_follow_the_redaction(tmp_path: Path) -> None:
    page_two = "Second page.\n"
    path = tmp_path / "notes.txt"
    path.write_text(f"token {GITHUB} on the first page\n{page_two}")
    parsed = read_document(path, 1 << 20)
    assert isinstance(parsed, ParsedDocument)
    paged = dataclasses.replace(parsed, pages=(0, parsed.text.index(page_two)))
    cleaned = clean_document(paged, "notes.txt")
    assert GITHUB not in cleaned.parsed.text and cleaned.found == 1
    assert cleaned.parsed.text[cleaned.parsed.pages[1]:] == page_two


# -- hostile input: bounded time, no crash -------------------------------------------------------------

def test_a_five_megabyte_line_costs_bounded_time() -> None:
    line = ("x = 'password' + " + _chars(200) + " ") * (5_000_000 // 218) + GITHUB
    t = time.perf_counter()
    found = find_secrets(line, "big.py")
    seconds = time.perf_counter() - t
    print(f"5 MB single line ({len(line) / 1e6:.1f} MB, windows of {MAX_LINE_CHARS}): {seconds:.2f} s")
    assert line[found[-1].start:found[-1].end] == GITHUB
    assert seconds < 60


def test_a_hundred_thousand_high_entropy_lines_cost_bounded_time() -> None:
    text = "\n".join(_chars(24, string.ascii_letters + string.digits + "+/") for _ in range(100_000))
    t = time.perf_counter()
    found = find_secrets(text, "data.txt")
    seconds = time.perf_counter() - t
    kinds = sorted({f.kind for f in found})
    print(f"100k high-entropy lines ({len(text) / 1e6:.1f} MB): {seconds:.2f} s, {len(found)} found {kinds}")
    # Random base64 holds, by chance, a few strings of some token shapes (Artifactory's, Twilio's).
    assert len(found) < 20 and seconds < 60


def test_many_key_headers_without_an_end_cost_bounded_time() -> None:
    text = "-----BEGIN RSA PRIVATE KEY-----\n" * 100_000
    t = time.perf_counter()
    redact_text(text)
    seconds = time.perf_counter() - t
    print(f"100k private key headers, no END: {seconds:.2f} s")
    assert seconds < 30


def test_binary_looking_text_does_not_crash_the_scanner() -> None:
    noise = bytes(_rng.randrange(256) for _ in range(200_000)).decode("latin-1")
    red = redact_text(noise + f"\n{GITHUB}\n\x00\x01\x02", path="blob.bin")
    assert GITHUB not in red.text and red.text.count("\n") == noise.count("\n") + 2


# -- the pipeline: nothing stored holds a credential ------------------------------------------------

@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "settings.py").write_text(SETTINGS)
    (root / "fixtures.py").write_text(ORDINARY)
    return root


def _corpus_chunks(corpus: str) -> tuple[int, dict[str, list[tuple[str, int]]]]:
    with session_scope() as s:
        c = get_corpus(s, corpus)
        rows = s.execute(select(Document.path, Chunk.text, Chunk.redacted).join(Chunk)
                         .where(Document.corpus_id == c.id).order_by(Document.path, Chunk.ordinal)).all()
        by_path: dict[str, list[tuple[str, int]]] = {}
        for path, text, redacted in rows:
            by_path.setdefault(path, []).append((text, redacted))
        return c.id, by_path


def _keep_secrets(keep: bool) -> None:
    with session_scope() as s:
        for ws in s.scalars(select(Workspace)):
            ws.keep_secrets = keep


def test_ingested_credentials_are_nowhere_in_what_is_stored(corral_env: Path, repo: Path) -> None:
    ensure_schema()
    report = ingest_now("code", repo)
    assert report.indexed == 2
    corpus_id, by_path = _corpus_chunks("code")
    settings = by_path["repo/settings.py"]
    stored = "".join(text for text, _ in settings)
    assert not [s for s in PLANTED if s in stored]
    assert sum(n for _, n in settings) == 8
    assert all(n == count_redactions(text) for text, n in settings)  # each chunk counts its own
    assert [n for _, n in by_path["repo/fixtures.py"]] == [0] * len(by_path["repo/fixtures.py"])
    assert "".join(t for t, _ in by_path["repo/fixtures.py"]) == ORDINARY

    keyword = get_keyword_index()
    for secret in (AWS_ID, GITHUB, STRIPE, KEY_BODY[0]):
        assert keyword.search(corpus_id, secret, 10) == [], secret
    assert keyword.search(corpus_id, "GITHUB_TOKEN", 10)  # the code around it is still found
    documents = get_vector_store()._collection(corpus_id).get(include=["documents"])["documents"]  # type: ignore[attr-defined]
    assert documents and not [s for s in PLANTED for d in documents if s in d]

    reader = CorpusReader(get_sessionmaker(), corpus_id)
    lines, _ = reader.read_document("repo/settings.py")
    read = "\n".join(ln.text for ln in lines)
    assert not [s for s in PLANTED if s in read] and count_redactions(read) == 8
    after = reader.read_span("repo/settings.py", AFTER_KEY_LINE, AFTER_KEY_LINE)
    assert after[0].text == "def after_key() -> str:"  # the line numbers after the key are the file's


def test_keeping_secrets_applies_at_the_next_ingest_and_back(corral_env: Path, repo: Path) -> None:
    ensure_schema()
    ingest_now("code", repo)
    again = ingest_now("code", repo)
    assert again.unchanged == 2 and again.indexed == 0  # nothing changed, nothing redone

    _keep_secrets(True)
    kept = ingest_now("code", repo)
    assert kept.indexed == 1 and kept.unchanged == 1  # only the document with credentials
    _, by_path = _corpus_chunks("code")
    stored = "".join(text for text, _ in by_path["repo/settings.py"])
    assert stored == SETTINGS and sum(n for _, n in by_path["repo/settings.py"]) == 8
    assert ingest_now("code", repo).unchanged == 2

    _keep_secrets(False)
    redacted = ingest_now("code", repo)
    assert redacted.indexed == 1
    _, by_path = _corpus_chunks("code")
    stored = "".join(text for text, _ in by_path["repo/settings.py"])
    assert not [s for s in PLANTED if s in stored] and count_redactions(stored) == 8
    assert ingest_now("code", repo).unchanged == 2


def test_a_credential_in_a_screenshot_is_painted_over_in_the_stored_image() -> None:
    """A screenshot of a config holding an AWS key: the OCR'd text is redacted, and so are the
    pixels the citation shows and a vision backend would be sent; the rest of the image is kept."""
    import io

    from PIL import Image

    from tests.ingestion.test_images import parse, png, render

    key = "AKIA" + "Q7ZXMN4V2K8PLR3T"
    image, boxes = render(["Deploy notes for the pager", f"aws_access_key_id = {key}"], width=900)
    parsed = parse("config.png", png(image))
    assert isinstance(parsed, ParsedDocument) and key in parsed.text
    cleaned = clean_document(parsed, "config.png")
    assert key not in cleaned.parsed.text and cleaned.found == 1
    [stored] = cleaned.parsed.images
    assert stored.data != parsed.images[0].data
    after = Image.open(io.BytesIO(stored.data)).convert("L")
    before = Image.open(io.BytesIO(parsed.images[0].data)).convert("L")
    x0, y0, x1, y1 = boxes[1]  # the key's line, as drawn (the stored copy is not scaled: 900 px)
    hidden = after.crop((x0, y0, x1, y1))
    assert hidden.getextrema()[1] < 40  # painted black: nothing of the key is left to read
    kept = (x0, boxes[0][1], x1, boxes[0][3])
    assert after.crop(kept).tobytes() == before.crop(kept).tobytes()  # the other line untouched
    assert clean_document(parsed, "config.png", keep=True).parsed.images == parsed.images
