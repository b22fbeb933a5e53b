"""A client that retries a POST with the same Idempotency-Key gets the first job back, never a second."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from corral.platform.api.app import create_app


@pytest.fixture
def client(corral_env: Path) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def allowed_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reset_caches: object) -> Path:
    root = tmp_path / "allowed"
    docs = root / "docs"
    docs.mkdir(parents=True)
    (docs / "a.md").write_text("# A\n\nAlpha.\n")
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", f'["{root}"]')
    return docs


def _jobs(client: TestClient) -> int:
    return int(client.get("/v1/jobs").json()["total"])


def test_a_retried_ingest_returns_the_first_job(corral_env: Path, allowed_docs: Path,
                                                reset_caches: object) -> None:
    from tests.conftest import clear_caches

    clear_caches()
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        headers = {"Idempotency-Key": "retry-me-1"}
        first = client.post("/v1/corpora/docs/ingest", json={"path": str(allowed_docs)}, headers=headers)
        assert first.status_code == 202, first.text
        again = client.post("/v1/corpora/docs/ingest", json={"path": str(allowed_docs)}, headers=headers)
        assert again.status_code == 202 and again.json()["job_id"] == first.json()["job_id"]
        assert _jobs(client) == 1

        other = client.post("/v1/corpora/other/ingest", json={"path": str(allowed_docs)}, headers=headers)
        assert other.status_code == 409, other.text
        assert "different request" in other.json()["error"]["message"]
        assert _jobs(client) == 1


def test_concurrent_retries_create_one_job(corral_env: Path, allowed_docs: Path) -> None:
    from tests.conftest import clear_caches

    clear_caches()
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        def post(_: int) -> tuple[int, str | None]:
            r = client.post("/v1/corpora/docs/ingest", json={"path": str(allowed_docs)},
                            headers={"Idempotency-Key": "burst"})
            return r.status_code, r.json().get("job_id")

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(post, range(6)))
        created = {job for status, job in results if status == 202}
        assert len(created) == 1, results
        # Losers either got the same job or were told the first request is still being processed.
        assert all(status in (202, 409) for status, _ in results), results
        assert _jobs(client) == 1


def test_a_failed_request_releases_its_key(client: TestClient) -> None:
    headers = {"Idempotency-Key": "fails-first"}
    bad = client.post("/v1/corpora/docs/ingest", json={"path": "/no/such/folder"}, headers=headers)
    assert bad.status_code in (400, 403), bad.text
    # The key was released: a corrected request with the same key is not blocked by the failure.
    again = client.post("/v1/corpora/docs/ingest", json={"path": "/no/such/folder"}, headers=headers)
    assert again.status_code == bad.status_code


def test_malformed_keys_are_refused(client: TestClient) -> None:
    r = client.post("/v1/corpora/docs/ingest", json={"path": "/tmp"}, headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 422, r.text
