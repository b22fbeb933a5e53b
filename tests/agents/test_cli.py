"""``corral ask`` (strategies, agent, verbose decision) and ``corral eval`` on a small corpus."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from corral.platform.cli.app import app
from tests.agents.conftest import LoadCorpus

runner = CliRunner()
HANDBOOK = {"handbook/shipping.md": "# Shipping\n\nParcels leave the warehouse on Tuesdays.\n",
            "handbook/returns.md": "# Returns\n\nReturns are accepted within 30 days.\n"}


def test_ask_shows_strategy_estimates_steps_and_verified_citations(load_corpus: LoadCorpus) -> None:
    load_corpus("handbook", HANDBOOK)
    r = runner.invoke(app, ["ask", "When do parcels leave?", "-c", "handbook", "--strategy", "scoped-stuff",
                            "--verbose"])
    assert r.exit_code == 0, r.output
    assert "Strategy: scoped-stuff" in r.output and "forced by the request" in r.output
    assert "map-reduce:" in r.output and "step route:" in r.output and "verified" in r.output
    j = runner.invoke(app, ["ask", "When do parcels leave?", "-c", "handbook", "--json"])
    body = json.loads(j.output)
    assert body["decision"]["estimates"] and body["citations"][0]["verified"] is True


def test_ask_rejects_an_unknown_strategy_and_an_empty_question(load_corpus: LoadCorpus) -> None:
    load_corpus("handbook", HANDBOOK)
    bad = runner.invoke(app, ["ask", "q?", "-c", "handbook", "--strategy", "telepathy"])
    assert bad.exit_code == 2 and "telepathy" in bad.output
    empty = runner.invoke(app, ["ask", "  ", "-c", "handbook"])
    assert empty.exit_code == 2 and "empty" in empty.output


def test_eval_reports_recall_and_tokens_per_strategy(corral_env: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["eval", "--workdir", str(tmp_path / "w"), "--documents", "6", "--needles", "2",
                            "--code-tasks", "2", "--code-package", "json", "--window", "2048", "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.output[r.output.index("{"):])
    rows = {(x["kind"], x["strategy"]) for x in body["docs"]["2048"]}
    assert {("needle", "router"), ("needle", "stuff"), ("aggregate", "map-reduce")} <= rows
    assert {x["strategy"] for x in body["code"]["2048"]} == {"stuff", "retrieve", "scoped-stuff",
                                                               "map-reduce", "router"}
    bad = runner.invoke(app, ["eval", "--code-package", "../../etc", "--window", "4096"])
    assert bad.exit_code == 2 and "not standard-library" in bad.output
