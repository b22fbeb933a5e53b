"""Shared fixtures: an isolated Corral per test, a tiny random chat model, and the real services.

Service-backed fixtures read CORRAL_TEST_DATABASE_URL / CORRAL_TEST_REDIS_URL, skip with the reason
when a service is absent, and fail instead when CORRAL_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


def service_missing(reason: str) -> None:
    if os.environ.get("CORRAL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (CORRAL_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def clear_caches() -> None:
    from corral.core.config import get_settings
    from corral.ingestion.tokens import get_token_counter
    from corral.platform.composition import get_chat_model

    get_settings.cache_clear()
    get_token_counter.cache_clear()
    get_chat_model.cache_clear()


def wait_for_job(client: Any, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{id}`` until the job is finished; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if body["state"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


@pytest.fixture
def wait_job() -> Callable[..., dict[str, Any]]:
    return wait_for_job


@pytest.fixture
def reset_caches() -> Callable[[], None]:
    return clear_caches


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's real tokenizer (with its chat template), extracted once from the GGUF."""
    from corral.core.config import Settings
    from corral.ingestion.tokens import load_tokenizer

    folder, gguf = Settings(chat_model="smollm2-135m").resolved_chat_model()
    cache = tmp_path_factory.mktemp("tokcache")
    tok = load_tokenizer(folder, gguf, cache)
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer_dir: Path) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer and a 2048-token window: fast, offline."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def corral_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_chat_model: Path
) -> Iterator[Path]:
    """An embedded-mode Corral in a fresh data dir, answering with the tiny model."""
    for key in list(os.environ):
        if key.startswith("CORRAL_") and not key.startswith(("CORRAL_TEST_", "CORRAL_REQUIRE")):
            monkeypatch.delenv(key)
    data = tmp_path / "data"
    monkeypatch.setenv("CORRAL_DATA_DIR", str(data))
    monkeypatch.setenv("CORRAL_CHAT_MODEL_PATH", str(tiny_chat_model))
    monkeypatch.setenv("CORRAL_CHAT_MAX_NEW_TOKENS", "8")
    monkeypatch.setenv("CORRAL_CHUNK_CHARS", "400")
    clear_caches()
    yield data
    clear_caches()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.environ.get("CORRAL_TEST_DATABASE_URL", DEFAULT_DB)
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        service_missing(f"PostgreSQL not reachable at {url}: {exc.__class__.__name__}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"corral_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        postgres_admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = postgres_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from corral.core.db.session import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("CORRAL_TEST_REDIS_URL", DEFAULT_REDIS)
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        service_missing(f"Redis not reachable at {url}: {exc.__class__.__name__}")
    finally:
        client.close()
    return url


def issue_key(*scopes: str, workspace: str = "default", name: str = "test") -> str:
    """A new API key of ``workspace`` with ``scopes`` (default: admin), written to the configured
    database; returns the secret."""
    from corral.core.db import session_scope
    from corral.core.db.migrate import ensure_schema
    from corral.core.services import get_or_create_workspace
    from corral.core.services.keys import create_key, parse_scopes

    ensure_schema()
    with session_scope() as session:
        ws = get_or_create_workspace(session, workspace)
        return create_key(session, ws, name, parse_scopes(list(scopes or ("admin",)))).secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
