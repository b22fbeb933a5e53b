"""The CLI as a user meets it: exit codes that say what happened, messages instead of tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.platform.cli import exit_codes
from corral.platform.cli.app import app

runner = CliRunner()


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "good.md").write_text("# Good\n\nThe office opens at nine.\n")
    (root / "image.py").write_bytes(b"\x00" * 64)
    (root / "broken.txt").write_bytes(b"\xc3\x28 invalid")
    return root


def test_ingest_with_a_failed_file_exits_partial(corral_env: Path, mixed: Path) -> None:
    result = runner.invoke(app, ["ingest", str(mixed), "--corpus", "mixed"])
    assert result.exit_code == exit_codes.PARTIAL, result.output
    assert all(f"1 {word}" in result.output for word in ("indexed", "skipped", "failed"))
    assert "invalid UTF-8" in result.output

    again = runner.invoke(app, ["ingest", str(mixed), "--corpus", "mixed", "--json"])
    assert again.exit_code == exit_codes.PARTIAL, again.output
    assert json.loads(again.output)["unchanged"] == 1

    (mixed / "broken.txt").write_text("fixed now\n")
    fixed = runner.invoke(app, ["ingest", str(mixed), "--corpus", "mixed", "--json"])
    assert fixed.exit_code == exit_codes.OK, fixed.output
    assert (json.loads(fixed.output)["indexed"], json.loads(fixed.output)["unchanged"]) == (1, 1)


def test_ingest_of_nothing_indexable_exits_4(corral_env: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["ingest", str(tmp_path / "empty"), "--corpus", "e"])
    assert result.exit_code == exit_codes.NOTHING_INDEXED, result.output
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)))
    assert runner.invoke(app, ["ingest", str(binary), "--corpus", "e"]).exit_code == 4


def test_missing_path_and_bad_corpus_name_exit_2(corral_env: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "--corpus", "x"])
    assert missing.exit_code == exit_codes.BAD_INPUT
    assert "path does not exist" in missing.output
    bad_name = runner.invoke(app, ["ingest", str(tmp_path), "--corpus", "../etc"])
    assert bad_name.exit_code == exit_codes.BAD_INPUT and "invalid corpus name" in bad_name.output


def test_ask_unknown_corpus_exits_2_with_a_hint(corral_env: Path) -> None:
    result = runner.invoke(app, ["ask", "what?", "--corpus", "ghost"])
    assert result.exit_code == exit_codes.BAD_INPUT
    assert "no corpus named 'ghost'" in result.output and "corral ingest" in result.output


def test_ask_prints_answer_citations_and_strategy(corral_env: Path, mixed: Path) -> None:
    runner.invoke(app, ["ingest", str(mixed), "--corpus", "mixed"])
    result = runner.invoke(app, ["ask", "When does the office open?", "--corpus", "mixed"])
    assert result.exit_code == 0, result.output
    assert "A:" in result.output and "Sources:" in result.output and "Support:" in result.output
    assert "mixed/good.md:1-3" in result.output
    assert "Strategy: stuff" in result.output
    as_json = runner.invoke(app, ["ask", "When?", "--corpus", "mixed", "--json",
                                  "--strategy", "retrieve"])
    body = json.loads(as_json.output)
    assert body["strategy"] == "retrieve" and body["citations"][0]["label"] == "mixed/good.md:1-3"


def test_installed_command_reports_errors_without_a_traceback(
    corral_env: Path, tmp_path: Path
) -> None:
    corral = Path(sys.executable).parent / "corral"
    r = subprocess.run([str(corral), "ingest", str(tmp_path / "missing"), "--corpus", "c"],
                       capture_output=True, text=True, timeout=120, env={**os.environ})
    assert r.returncode == 2
    assert "error: path does not exist" in r.stderr and "Traceback" not in r.stderr


def test_verbose_ask_shows_every_step_as_plain_text(corral_env: Path, mixed: Path) -> None:
    """Steps carry tool arguments and lists (``[...]``): they print as text, not as console markup."""
    runner.invoke(app, ["ingest", str(mixed), "--corpus", "mixed"])
    result = runner.invoke(app, ["ask", "When does the office open?", "--corpus", "mixed", "--verbose"])
    assert result.exit_code == exit_codes.OK, result.output
    assert "step read:" in result.output and "step generate:" in result.output
    assert "[dim]" not in result.output and "[/]" not in result.output
