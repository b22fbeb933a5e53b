"""Settings: embedded defaults that need nothing running, server mode that says what it lacks."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from corral.core.config import Mode, Settings, get_settings
from corral.core.config.chat_models import DEFAULT_CHAT_MODEL, PRESETS, ChatModelPreset, resolve_preset
from corral.core.errors import ConfigurationError


def test_embedded_defaults_live_under_the_data_dir(corral_env: Path) -> None:
    s = get_settings()
    assert s.mode is Mode.EMBEDDED
    assert s.sqlalchemy_url == f"sqlite:///{corral_env / 'corral.db'}"
    assert s.chroma_path == corral_env / "chroma"
    assert s.redis_url is None and s.chroma_host is None
    assert (s.resolved_embedding_model_path() / "model.safetensors").is_file()


def test_chat_model_presets_resolve_to_their_packaged_ggufs(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_CHAT_MODEL_PATH")
    folder, gguf = Settings(chat_model="smollm2-135m").resolved_chat_model()
    assert gguf == "SmolLM2-135M-Instruct.Q4_1.gguf" and (folder / gguf).is_file()
    # The default is the split Qwen2.5-Coder GGUF, joined once under the data dir and checked by hash.
    s = Settings()
    assert s.chat_model == DEFAULT_CHAT_MODEL == "qwen2.5-coder-0.5b"
    folder, gguf = s.resolved_chat_model()
    joined = folder / gguf
    assert joined.parent == corral_env / "models" / "qwen2.5-coder-0.5b"
    assert joined.stat().st_size == PRESETS["qwen2.5-coder-0.5b"].size
    assert joined.read_bytes()[:4] == b"GGUF"
    assert Settings().resolved_chat_model() == (folder, gguf)  # the second call reuses the joined file


def test_a_chat_model_path_is_a_folder_or_a_gguf_file(
    corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_CHAT_MODEL_PATH")
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF")
    assert Settings(chat_model=str(gguf)).resolved_chat_model() == (tmp_path, "my-model.gguf")
    assert Settings(chat_model=str(tmp_path)).resolved_chat_model() == (tmp_path, None)
    pinned = Settings(chat_model_path=gguf, chat_model="smollm2-135m")
    assert pinned.resolved_chat_model()[1] == "my-model.gguf"
    with pytest.raises(ConfigurationError, match="neither a preset"):
        Settings(chat_model="gpt-17").resolved_chat_model()


def _fake_split_model(root: Path, monkeypatch: pytest.MonkeyPatch, payloads: list[bytes]) -> ChatModelPreset:
    for i, data in enumerate(payloads, start=1):
        pkg = root / f"corral_test_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / "part.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(root))
    whole = b"".join([b"GGUF-one-", b"GGUF-two"])
    return ChatModelPreset(
        name="split-test", title="test", licence="none", file="joined.gguf",
        packages=tuple(f"corral_test_part{i}" for i in range(1, len(payloads) + 1)),
        parts=("data/part.bin",) * len(payloads), sha256=hashlib.sha256(whole).hexdigest(), size=len(whole),
    )


def test_a_split_model_is_joined_once_and_a_changed_part_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = _fake_split_model(tmp_path / "good", monkeypatch, [b"GGUF-one-", b"GGUF-two"])
    folder, name = resolve_preset(preset, tmp_path / "models")
    assert (folder / name).read_bytes() == b"GGUF-one-GGUF-two"

    # Same size, other bytes: a re-uploaded part. The digest refuses it and leaves no file behind.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "good" not in p])
    for name_ in ("corral_test_part1", "corral_test_part2"):
        sys.modules.pop(name_, None)
    tampered = _fake_split_model(tmp_path / "bad", monkeypatch, [b"GGUF-one-", b"EVIL-two"])
    with pytest.raises(ConfigurationError, match=r"sha256 .* not the pinned"):
        resolve_preset(tampered, tmp_path / "other-models")
    assert not any((tmp_path / "other-models").rglob("*.gguf"))
    truncated = _fake_split_model(tmp_path / "short", monkeypatch, [b"GGUF-one-"])
    with pytest.raises(ConfigurationError, match=r"missing|not the pinned"):
        resolve_preset(truncated, tmp_path / "third")


def test_settings_are_read_once_and_cached(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("CORRAL_RETRIEVE_TOP_K", "3")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().retrieve_top_k == 3


def test_server_mode_names_what_it_is_missing(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_MODE", "server")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="CORRAL_DATABASE_URL and CORRAL_REDIS_URL"):
        get_settings()


def test_server_mode_refuses_sqlite(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_MODE", "server")
    monkeypatch.setenv("CORRAL_DATABASE_URL", "sqlite:////tmp/x.db")
    monkeypatch.setenv("CORRAL_REDIS_URL", "redis://127.0.0.1:6379/0")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="not SQLite"):
        get_settings()


def test_server_mode_uses_psycopg_for_plain_postgres_urls(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_MODE", "server")
    monkeypatch.setenv("CORRAL_DATABASE_URL", "postgresql://u@db:5432/corral")
    monkeypatch.setenv("CORRAL_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("CORRAL_CHROMA_HOST", "chroma")
    get_settings.cache_clear()
    s = get_settings()
    assert s.sqlalchemy_url == "postgresql+psycopg://u@db:5432/corral"
    assert s.chroma_host == "chroma"


@pytest.mark.parametrize("secret", [None, "short"])
def test_production_refuses_default_or_weak_secrets(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("CORRAL_ENVIRONMENT", "production")
    if secret:
        monkeypatch.setenv("CORRAL_SECRET_KEY", secret)
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="CORRAL_SECRET_KEY"):
        get_settings()
    monkeypatch.setenv("CORRAL_SECRET_KEY", "x" * 40)
    get_settings.cache_clear()
    assert get_settings().environment == "production"


def test_malformed_values_get_a_clear_error(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_RETRIEVE_TOP_K", "lots")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="retrieve_top_k"):
        get_settings()


def test_the_reading_budget_comes_from_the_preset_or_the_setting(
    corral_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_CHAT_MODEL_PATH")
    assert Settings().reading_budget() == (PRESETS[DEFAULT_CHAT_MODEL].reading_budget,
                                           f"{DEFAULT_CHAT_MODEL}'s measured reading budget")
    assert Settings(chat_reading_budget=1500).reading_budget() == (1500, "CORRAL_CHAT_READING_BUDGET")
    # A model of one's own, or a remote server: as much as the window holds, unless set.
    assert Settings(chat_model_path=corral_env).reading_budget() == (None, None)


def test_an_embedded_preset_caps_map_reduce_calls(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_CHAT_MODEL_PATH")
    assert Settings().map_calls() == 4  # each part is a reading budget of CPU prefill
    assert Settings(map_reduce_max_calls=2).map_calls() == 2
    assert Settings(chat_backend="openai", openai_base_url="http://x/v1", openai_model="m",
                    chat_context_window=4096).map_calls() == 16


def test_the_guard_names_what_it_is_missing(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_GUARD_ANSWERS", "true")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="CORRAL_GUARD_ANSWERS needs CORRAL_GUARD_URL"):
        get_settings()
    monkeypatch.setenv("CORRAL_GUARD_URL", "http://guard:8000/v1")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="CORRAL_GUARD_URL needs CORRAL_GUARD_MODEL"):
        get_settings()
    monkeypatch.setenv("CORRAL_GUARD_MODEL", "meta-llama/Llama-Guard-3-1B")
    monkeypatch.setenv("CORRAL_GUARD_ON_ERROR", "closed")
    get_settings.cache_clear()
    s = get_settings()
    assert s.guard_answers and s.guard_screen and s.guard_on_error == "closed" and s.guard_max_calls == 32
    monkeypatch.setenv("CORRAL_GUARD_ON_ERROR", "maybe")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="guard_on_error"):
        get_settings()
