"""``POST /v1/corpora/{name}/documents``: files and zips uploaded, streamed to disk, indexed as a job;
oversize, malformed and hostile uploads refused with nothing left on disk."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from corral.platform.api.app import create_app
from tests.conftest import bearer, issue_key

WaitJob = Callable[..., dict[str, Any]]


@pytest.fixture
def client(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from corral.core.config import get_settings

    monkeypatch.setenv("CORRAL_UPLOAD_MAX_BYTES", str(64 * 1024))
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


def _uploads(data: Path) -> list[str]:
    root = data / "uploads"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_files_and_a_zip_are_indexed_as_one_job(
    client: TestClient, corral_env: Path, wait_job: WaitJob
) -> None:
    bundle = _zip({"guide/intro.md": b"# Intro\n\nRefunds take five days.\n",
                   "guide/.env": b"SECRET=1\n", "../../escape.md": b"# Escape\n"})
    r = client.post("/v1/corpora/up/documents", files=[
        ("files", ("notes.md", b"# Notes\n\nShipping is on Tuesdays.\n", "text/markdown")),
        ("files", ("../../etc/evil.txt", b"named with a climb\n", "text/plain")),
        ("files", ("bundle.zip", bundle, "application/zip")),
    ])
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["indexed"] == 3, result
    problems = {p["path"]: p["reason"] for p in result["problems"]}
    assert "hidden file" in problems["bundle/guide/.env"]
    assert any("unsafe path" in reason for reason in problems.values())
    detail = client.get(f"/v1/jobs/{job['id']}", params={"items_state": "indexed"}).json()
    assert sorted(i["path"] for i in detail["items"]) == ["bundle/guide/intro.md", "evil.txt", "notes.md"]
    assert not (corral_env.parent / "etc").exists()
    assert _uploads(corral_env) == []  # the staged files go once the job is done


def test_one_file_is_one_document_named_as_uploaded(
    client: TestClient, corral_env: Path, wait_job: WaitJob
) -> None:
    r = client.post("/v1/corpora/one/documents",
                    files={"file": ("policy.md", b"# Policy\n\nReturns within 30 days.\n")})
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "succeeded" and job["result"]["indexed"] == 1
    again = client.post("/v1/corpora/one/documents",  # the same file again: one source, unchanged
                        files={"file": ("policy.md", b"# Policy\n\nReturns within 30 days.\n")})
    assert wait_job(client, again.json()["job_id"])["result"]["unchanged"] == 1


def test_a_zip_bomb_is_a_clear_error_in_the_job(
    client: TestClient, corral_env: Path, wait_job: WaitJob
) -> None:
    bomb = _zip({"zeros.txt": b"\0" * (4 * 1024 * 1024), "fine.md": b"# Fine\n"})
    assert len(bomb) < 64 * 1024
    r = client.post("/v1/corpora/bomb/documents", files={"f": ("bomb.zip", bomb)})
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "succeeded" and job["result"]["indexed"] == 1
    [problem] = job["result"]["problems"]
    assert problem["path"] == "bomb/zeros.txt" and "zip bomb" in problem["reason"]
    assert problem["status"] == "failed"


def test_oversize_uploads_are_413_and_leave_nothing(client: TestClient, corral_env: Path) -> None:
    big = b"x" * (70 * 1024)
    sized = client.post("/v1/corpora/big/documents", files={"f": ("big.txt", big)})
    assert sized.status_code == 413 and sized.json()["error"]["type"] == "payload_too_large"

    body = (b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"big.txt\"\r\n\r\n"
            + big + b"\r\n--b--\r\n")

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused as it streams past the limit
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    streamed = client.post("/v1/corpora/big/documents", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413, streamed.text
    assert _uploads(corral_env) == []
    assert client.get("/v1/corpora").json()["items"] == []


@pytest.mark.parametrize(("content_type", "body", "message"), [
    ("application/json", b"{}", "multipart/form-data"),
    ("multipart/form-data", b"--b\r\n", "multipart/form-data"),  # no boundary
    ("multipart/form-data; boundary=b",
     b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nhalf a file",
     "ended before"),
    ("multipart/form-data; boundary=b", b"this is not multipart at all\r\n", "malformed multipart"),
    ("multipart/form-data; boundary=b",
     b"--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\njust a field\r\n--b--\r\n", "no file"),
    ("multipart/form-data; boundary=b",
     b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.zip\"\r\n\r\nnot a zip\r\n--b--\r\n",
     "not a readable zip"),
    ("multipart/form-data; boundary=b",
     b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.md\"\r\n\r\none\r\n"
     b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"sub/a.md\"\r\n\r\ntwo\r\n--b--\r\n",
     "two uploaded files"),
    ("multipart/form-data; boundary=b",
     b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"..\"\r\n\r\nx\r\n--b--\r\n",
     "not a usable file name"),
])
def test_malformed_uploads_are_400_and_leave_nothing(
    client: TestClient, corral_env: Path, content_type: str, body: bytes, message: str
) -> None:
    r = client.post("/v1/corpora/bad/documents", content=body, headers={"content-type": content_type})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_input" and message in r.json()["error"]["message"]
    assert _uploads(corral_env) == []
    assert client.get("/v1/corpora").json()["items"] == []


def test_uploads_need_the_ingest_scope_and_wait_for_a_running_ingest(
    client: TestClient, corral_env: Path
) -> None:
    from corral.core.db import JobKind, session_scope
    from corral.core.services import create_job, get_or_create_corpus

    reader = client.post("/v1/corpora/kb/documents", files={"f": ("a.md", b"# A\n")},
                         headers=bearer(issue_key("read")))
    assert reader.status_code == 403
    with session_scope() as s:
        busy = create_job(s, JobKind.INGEST, get_or_create_corpus(s, "kb").id,
                          {"corpus": "kb", "kind": "path", "uri": "/x", "options": {}}).id
    r = client.post("/v1/corpora/kb/documents", files={"f": ("a.md", b"# A\n")},
                    headers=bearer(issue_key("ingest")))
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["job_id"] == busy and busy in error["message"] and error["type"] == "conflict"
    assert _uploads(corral_env) == []


def test_a_cancelled_upload_leaves_neither_files_nor_an_empty_corpus(
    client: TestClient, corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "hand_off", lambda job_id: None)  # stays queued
    r = client.post("/v1/corpora/brief/documents", files={"f": ("a.md", b"# A\n")})
    assert r.status_code == 202 and len(_uploads(corral_env)) == 1
    cancelled = client.post(f"/v1/jobs/{r.json()['job_id']}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["error"] == "cancelled before it started"
    assert _uploads(corral_env) == []
    assert client.get("/v1/corpora").json()["items"] == []
    assert client.get(f"/v1/jobs/{r.json()['job_id']}").json()["corpus"] == "brief"


def test_a_retried_upload_with_its_idempotency_key_returns_the_first_job(
    client: TestClient, corral_env: Path, wait_job: WaitJob
) -> None:
    files = {"file": ("faq.md", b"# FAQ\n\nSupport answers within a day.\n")}
    headers = {"Idempotency-Key": "upload-1"}
    first = client.post("/v1/corpora/faq/documents", files=files, headers=headers)
    assert first.status_code == 202, first.text
    # Retried while the first job may still run: the same job, not a 409 and not a second job.
    again = client.post("/v1/corpora/faq/documents", files=files, headers=headers)
    assert again.status_code == 202 and again.json()["job_id"] == first.json()["job_id"]
    other = client.post("/v1/corpora/faq/documents", headers=headers,
                        files={"file": ("faq.md", b"# FAQ\n\nSomething else.\n")})
    assert other.status_code == 409 and "different request" in other.json()["error"]["message"]
    assert wait_job(client, first.json()["job_id"])["state"] == "succeeded"
    assert client.get("/v1/jobs").json()["total"] == 1
    assert _uploads(corral_env) == []  # the retried copies were dropped, the job's own removed after it
