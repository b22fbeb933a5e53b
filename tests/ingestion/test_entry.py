"""The one ingestion entry: source specs classified once, the ingest policy checked in one place for
every door, in-process runs claimed and kept alive like a worker's, every skipped folder reported."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from corral.core.config import get_settings
from corral.core.db import Document, DocumentStatus, Job, JobState, session_scope
from corral.core.db.migrate import ensure_schema
from corral.core.errors import InvalidInputError, PermissionDeniedError
from corral.core.services import get_job
from corral.ingestion.ingest import ingest_now, submit_ingest
from corral.ingestion.pipeline import IngestProgress
from corral.ingestion.sources import (
    GitSpec,
    PathSpec,
    SourceSpec,
    check_spec,
    source_spec,
    spec_from_params,
    spec_params,
)


@pytest.fixture
def corral(corral_env: Path) -> Iterator[Path]:
    ensure_schema()
    yield corral_env


def _doc_states(corpus_prefix: str) -> dict[str, DocumentStatus]:
    with session_scope() as s:
        return {d.path: d.status for d in s.scalars(select(Document))
                if d.path.startswith(corpus_prefix)}


# --- what is read and what is reported --------------------------------------------------------


def test_a_nested_package_named_build_is_indexed_and_a_root_build_is_reported(
    corral: Path, tmp_path: Path
) -> None:
    root = tmp_path / "pip"
    (root / "operations" / "build").mkdir(parents=True)
    (root / "operations" / "build" / "wheel.py").write_text("def build_wheel():\n    return 'w'\n")
    (root / "operations" / "build" / "__init__.py").write_text('"""Building wheels."""\n')
    (root / "build" / "lib").mkdir(parents=True)
    (root / "build" / "lib" / "copy.py").write_text("COPY = 'stale build output'\n")
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00\x01")
    (root / "pkg" / "venv").mkdir()
    (root / "pkg" / "venv" / "create.py").write_text("def create():\n    pass\n")
    (root / "tools" / "env" / "lib").mkdir(parents=True)  # a virtual environment by its marker
    (root / "tools" / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "tools" / "env" / "lib" / "site.py").write_text("SITE = 1\n")

    report = ingest_now("pip", root)
    reasons = {p.path: (p.status, p.reason) for p in report.problems}
    assert reasons["pip/build"] == (
        "skipped", "build output at the source root is not indexed (a deeper build/ is read)")
    assert reasons["pip/pkg/__pycache__"] == ("skipped", "bytecode cache is not indexed")
    assert reasons["pip/tools/env"] == ("skipped", "virtual environment is not indexed")
    assert not any(p.startswith(("pip/build/", "pip/pkg/__pycache__/", "pip/tools/env/"))
                   for p in reasons)
    docs = _doc_states("pip/")
    for path in ("pip/operations/build/wheel.py", "pip/operations/build/__init__.py",
                 "pip/pkg/mod.py", "pip/pkg/venv/create.py"):
        assert docs[path] is DocumentStatus.INDEXED, path
    assert (report.indexed, report.skipped, report.failed) == (4, 3, 0)

    # Run again: the skipped folders are re-opened by path and stay skipped for the same reason.
    again = ingest_now("pip", root)
    assert (again.unchanged, again.skipped, again.indexed) == (4, 3, 0)
    assert {p.path: p.reason for p in again.problems} == {p: r for p, (_, r) in reasons.items()}


def test_the_report_counts_what_the_model_embedded(corral: Path, tmp_path: Path) -> None:
    root = tmp_path / "kb"
    root.mkdir()
    for i in range(3):
        (root / f"note{i}.md").write_text(f"# Note {i}\n\nThe locker code is {i * 11}.\n")
    same = "A paragraph that two files share word for word.\n"
    (root / "copy1.txt").write_text(same)
    (root / "copy2.txt").write_text(same)

    first = ingest_now("kb", root)
    assert first.indexed == 5 and first.chunks == 5
    assert first.embedded == 4  # the shared paragraph is embedded once
    assert ingest_now("kb", root).embedded == 0  # nothing changed, nothing embedded

    (root / "note0.md").write_text("# Note 0\n\nThe locker code changed to 99.\n")
    assert ingest_now("kb", root).embedded == 1


def test_a_zip_path_is_extracted_where_the_source_is_opened(corral: Path, tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.md", "# A\n\nalpha\n")
        zf.writestr("sub/b.txt", "beta\n")
    report = ingest_now("bundle", archive)
    assert report.indexed == 2 and report.root == "bundle.zip"
    assert set(_doc_states("bundle/")) == {"bundle/a.md", "bundle/sub/b.txt"}


# --- the in-process run is a job like a worker's ----------------------------------------------


def test_an_in_process_run_claims_its_job_and_keeps_the_heartbeat(
    corral: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion.pipeline import configured

    monkeypatch.setenv("CORRAL_JOB_STALE_SECONDS", "2")  # a beat every 0.5 s
    monkeypatch.setenv("CORRAL_INGEST_BATCH_SIZE", "1")
    get_settings.cache_clear()
    root = tmp_path / "kb"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nalpha\n")
    (root / "b.md").write_text("# B\n\nbeta\n")
    claimed: list[str] = []
    real_claim = configured.claim_job

    def spy_claim(session: object, job_id: str) -> bool:
        claimed.append(job_id)
        return real_claim(session, job_id)  # type: ignore[arg-type]

    monkeypatch.setattr(configured, "claim_job", spy_claim)
    seen: list[tuple[JobState, datetime | None]] = []

    def newest() -> tuple[JobState, datetime | None]:
        with session_scope() as s:
            job = s.scalars(select(Job).order_by(Job.created_at.desc())).first()
            assert job is not None
            return job.state, job.heartbeat_at

    def progress(p: IngestProgress) -> None:
        seen.append(newest())
        if p.done == 1:
            time.sleep(1.6)  # a slow batch: only the keep-alive thread beats meanwhile
            seen.append(newest())

    job_id = submit_ingest("kb", PathSpec(root), here=True, progress=progress)
    assert claimed == [job_id]
    assert all(state is JobState.RUNNING for state, _ in seen)
    before, during = seen[0][1], seen[1][1]
    assert before is not None and during is not None and during > before
    with session_scope() as s:
        job = get_job(s, job_id)
        assert job.state is JobState.SUCCEEDED and job.started_at is not None
        assert job.result is not None and job.result["indexed"] == 2


def test_the_cli_runs_the_same_entry_in_embedded_mode(corral: Path, tmp_path: Path) -> None:
    from corral.platform.cli.app import app as cli

    root = tmp_path / "kb"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nalpha\n")
    result = CliRunner().invoke(cli, ["ingest", str(root), "--corpus", "kb", "--json"])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        job = s.scalars(select(Job)).one()
        assert job.params["kind"] == "path" and job.params["uri"] == str(root)
        assert job.started_at is not None and job.heartbeat_at is not None
        assert job.result is not None and job.result["embedded"] == 1


# --- the policy, in one place for every door --------------------------------------------------


def test_cli_and_api_are_refused_by_the_same_policy(
    corral: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.ingestion.sources import spec as spec_module
    from corral.platform.api.app import create_app
    from corral.platform.cli.app import app as cli

    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (other / "x.md").write_text("x\n")
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", f'["{allowed}"]')
    get_settings.cache_clear()

    cli_refusal = CliRunner().invoke(cli, ["ingest", str(other), "--corpus", "kb"])
    with TestClient(create_app(), base_url="http://127.0.0.1") as client:
        api_refusal = client.post("/v1/corpora/kb/ingest", json={"path": str(other)})
        assert api_refusal.status_code == 403
        message = api_refusal.json()["error"]["message"]
        assert "outside the allowed ingest roots" in message
        assert cli_refusal.exit_code == 2 and "outside the allowed ingest roots" in cli_refusal.output

        # Both doors reach the policy through the same function: replace it, and both change.
        def refuse_all(path: Path, *_: object, **__: object) -> Path:
            raise PermissionDeniedError(f"the one ingest policy refuses {path.name}")

        monkeypatch.setattr(spec_module, "check_local_path", refuse_all)
        api = client.post("/v1/corpora/kb/ingest", json={"path": str(allowed)})
        assert api.status_code == 403
        assert api.json()["error"]["message"] == "the one ingest policy refuses allowed"
    cli_again = CliRunner().invoke(cli, ["ingest", str(allowed), "--corpus", "kb"])
    assert cli_again.exit_code == 2 and "the one ingest policy refuses allowed" in cli_again.output
    with session_scope() as s:
        assert s.scalars(select(Job)).first() is None  # refused before anything was written


# --- source specs: classified once, hostile ones refused clearly -------------------------------


def test_sources_are_classified_once(tmp_path: Path) -> None:
    assert source_spec(path="docs", base=tmp_path) == PathSpec(tmp_path / "docs")
    assert source_spec(path=str(tmp_path)) == PathSpec(tmp_path)
    assert source_spec(path="https://example.com/r.git") == GitSpec("https://example.com/r.git")
    assert source_spec(git="git@example.com:o/r.git", branch="main") == GitSpec(
        "git@example.com:o/r.git", "main")
    (tmp_path / "repo").mkdir()
    assert source_spec(git="repo", base=tmp_path) == GitSpec(str(tmp_path / "repo"))
    for spec in (PathSpec(tmp_path), GitSpec("https://example.com/r.git", "dev")):
        assert spec_from_params(spec_params(spec)) == spec


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "give either a path or a git URL"),
    ({"path": "/a", "git": "https://example.com/r.git"}, "give either a path or a git URL"),
    ({"path": "relative/path"}, "must be absolute"),
    ({"path": "/tmp\x00/etc"}, "NUL byte"),
    ({"path": ""}, "empty"),
    ({"path": "/" + "a" * 5000}, "longer than 4096"),
    ({"path": "/tmp", "branch": "main"}, "a branch needs a git URL"),
    ({"git": "https://example.com/r.git", "branch": "--upload-pack=evil"}, "not a valid branch"),
    ({"git": "https://example.com/r.git", "branch": "main; rm -rf /"}, "not a valid branch"),
    ({"git": "   "}, "the git URL is empty"),
])
def test_malformed_source_specs_are_refused_with_the_reason(
    kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        source_spec(**kwargs)


@pytest.mark.parametrize(("spec", "message"), [
    (GitSpec("ext::sh -c 'touch /tmp/pwned'"), "transport helpers"),
    (GitSpec("--upload-pack=touch /tmp/x"), "must not start with '-'"),
    (GitSpec("git://example.com/r.git"), "scheme 'git' is not allowed"),
    (GitSpec("file://other-host/srv/r.git"), "must name a local path"),
    (PathSpec(Path("/no/such/folder")), "path does not exist"),
    (GitSpec("/no/such/repo"), "no such repository folder"),
])
def test_hostile_or_missing_sources_are_refused_before_a_job_exists(
    spec: SourceSpec, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_spec(spec, [], development=True)


def test_outside_development_local_sources_need_allowed_roots(tmp_path: Path) -> None:
    with pytest.raises(PermissionDeniedError, match="CORRAL_INGEST_ALLOWED_ROOTS"):
        check_spec(PathSpec(tmp_path), [], development=False)
    with pytest.raises(PermissionDeniedError, match="outside the allowed ingest roots"):
        check_spec(GitSpec(str(tmp_path)), [tmp_path / "elsewhere"], development=False)
    # Refused before existence is looked at: a refused caller learns nothing about the disk.
    with pytest.raises(PermissionDeniedError):
        check_spec(PathSpec(tmp_path / "missing"), [tmp_path / "elsewhere"], development=True)
    check_spec(GitSpec("https://example.com/r.git"), [], development=False)  # remote: fine


@pytest.mark.parametrize("params", [
    {}, {"kind": "path"}, {"kind": "path", "uri": ""}, {"kind": "ftp", "uri": "/x"},
    {"kind": "git", "uri": "https://example.com/r.git", "options": "branch=main"},
])
def test_job_parameters_that_name_no_source_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        spec_from_params(params)
