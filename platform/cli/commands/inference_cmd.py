"""``corral inference serve``: the OpenAI-compatible inference server over one local model."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer

from corral.core.config import get_settings
from corral.core.errors import ConfigurationError, ModelError
from corral.inference.errors import InferenceError

log = logging.getLogger(__name__)

Backend = Literal["auto", "engine", "hf"]


def _model_location(model: Path | None, gguf: str | None) -> tuple[Path, str | None]:
    if model is None:
        folder, gguf_file = get_settings().resolved_chat_model()
        return folder, gguf or gguf_file
    if model.is_file():
        return model.parent, model.name
    if not model.is_dir():
        raise ConfigurationError(f"no model at {model}")
    return model, gguf


def load_text_engine(
    model: Path | None = None, gguf: str | None = None, backend: Backend | None = None
) -> Any:
    """Load the model to serve: the embedded engine when it is available and can load it (``auto``),
    else transformers (the reference backend)."""
    settings = get_settings()
    backend = backend or settings.inference_backend
    folder, gguf_file = _model_location(model, gguf)
    if backend in ("auto", "engine"):
        try:
            # Looked up by name: the embedded engine is optional while it is being built.
            load_engine = getattr(importlib.import_module("corral.inference.engine"), "load_engine", None)
            if load_engine is None:
                raise ImportError("corral.inference.engine has no load_engine")
            return load_engine(
                folder,
                gguf_file,
                cache_dir=settings.cache_dir / "prefix",
                context_window=settings.chat_context_window,
            )
        except (ImportError, InferenceError) as exc:
            if backend == "engine":
                raise ModelError(f"the embedded engine cannot serve {folder}: {exc}") from exc
            log.warning("embedded engine unavailable (%s); serving with transformers", exc)
    from corral.inference.hf import HFChatModel

    try:
        return HFChatModel(folder, gguf_file, context_window=settings.chat_context_window)
    except InferenceError as exc:
        raise ModelError(str(exc)) from exc


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
    """Serve /v1/chat/completions, /v1/models, /metrics and /healthz (OpenAI-compatible)."""
    import uvicorn

    from corral.inference.server import create_inference_app

    if backend is not None and backend not in ("auto", "engine", "hf"):
        raise ConfigurationError(f"--backend must be auto, engine or hf, not {backend!r}")
    settings = get_settings()
    engine = load_text_engine(model, gguf, cast(Backend | None, backend))
    app = create_inference_app(
        {name or engine.model_id: engine},
        max_body_bytes=settings.inference_max_body_bytes,
        default_max_tokens=settings.inference_default_max_tokens,
    )
    uvicorn.run(app, host=host or settings.inference_host, port=port or settings.inference_port,
                log_level="info")
