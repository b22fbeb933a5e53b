"""Settings: embedded defaults that need nothing running, server mode that says what it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.core.config import Mode, Settings, get_settings
from corral.core.errors import ConfigurationError


def test_embedded_defaults_live_under_the_data_dir(corral_env: Path) -> None:
    s = get_settings()
    assert s.mode is Mode.EMBEDDED
    assert s.sqlalchemy_url == f"sqlite:///{corral_env / 'corral.db'}"
    assert s.chroma_path == corral_env / "chroma"
    assert s.redis_url is None and s.chroma_host is None
    assert (s.resolved_embedding_model_path() / "model.safetensors").is_file()


def test_default_chat_model_is_the_packaged_smollm2_gguf() -> None:
    folder, gguf = Settings().resolved_chat_model()
    assert gguf == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (folder / gguf).is_file()


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
