"""``corral inference serve``: the OpenAI-compatible inference server over one local model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, cast

import typer

from corral.core.config import get_settings
from corral.core.errors import ConfigurationError
from corral.platform.api.auth import is_loopback
from corral.platform.composition import Backend, load_text_engine

log = logging.getLogger(__name__)


def _model_location(model: Path | None, gguf: str | None) -> tuple[Path, str | None]:
    if model is None:
        folder, gguf_file = get_settings().resolved_chat_model()
        return folder, gguf or gguf_file
    if model.is_file():
        return model.parent, model.name
    if not model.is_dir():
        raise ConfigurationError(f"no model at {model}")
    return model, gguf


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model folder or GGUF file (default: the configured chat model).")
    ] = None,
    gguf: Annotated[str | None, typer.Option(help="GGUF file name inside the --model folder.")] = None,
    backend: Annotated[
        str | None, typer.Option(help="auto, engine (embedded) or hf (transformers).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model id clients ask for (default: the file's).")] = None,
) -> None:
    """Serve /v1/chat/completions, /v1/models, /metrics and /healthz (OpenAI-compatible).

    With CORRAL_INFERENCE_API_KEY set, every request but /healthz must send it as a Bearer token;
    without it the server binds only a loopback address."""
    import uvicorn

    from corral.inference.server import create_inference_app

    if backend is not None and backend not in ("auto", "engine", "hf"):
        raise ConfigurationError(f"--backend must be auto, engine or hf, not {backend!r}")
    settings = get_settings()
    bind = host or settings.inference_host
    api_key = settings.inference_api_key.get_secret_value() if settings.inference_api_key else None
    if not api_key and not is_loopback(bind):
        raise ConfigurationError(
            f"refusing to serve on {bind} without an API key: set CORRAL_INFERENCE_API_KEY (clients "
            "send it as 'Authorization: Bearer …'; Corral's agents as CORRAL_OPENAI_API_KEY), or bind "
            "127.0.0.1")
    if not api_key:
        log.warning("the inference server accepts requests without a key on %s (loopback only); set "
                    "CORRAL_INFERENCE_API_KEY to demand one", bind)
    folder, gguf_file = _model_location(model, gguf)
    engine = load_text_engine(folder, gguf_file, cast(Backend | None, backend))
    weights = getattr(engine, "weights", None)
    if weights is not None:  # the embedded engine: say which path this CPU got
        from corral.inference.engine import cpu_features

        typer.echo(f"{engine.model_id}: {weights} weights on {cpu_features().describe()}", err=True)
    app = create_inference_app(
        {name or engine.model_id: engine},
        max_body_bytes=settings.inference_max_body_bytes,
        default_max_tokens=settings.inference_default_max_tokens,
        api_key=api_key,
    )
    uvicorn.run(app, host=bind, port=port or settings.inference_port,
                log_level="info")
