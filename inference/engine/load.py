"""``load_engine``: a model folder (or folder + GGUF file) → a ready ``Engine``, under ``EngineOptions``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.inference.decoding import eos_ids
from corral.inference.engine.cpu import WeightFormat, resolve_format
from corral.inference.engine.engine import Engine
from corral.inference.engine.kernels import decode_kernels
from corral.inference.engine.loading import load_hf_model, model_fingerprint, transformer_from_hf
from corral.inference.engine.prefix_cache import PrefixCache
from corral.inference.errors import InferenceError

__all__ = ["EngineOptions", "engine_from_hf", "load_engine"]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How to load and run a model; every field has a working default.

    ``weights``: ``auto`` (the CPU's best format, ``cpu.py``) or a named format, refused with the reason
    when the CPU cannot run it. ``cache_dir`` turns on the on-disk prefix cache (the in-memory one is
    always on). ``converted_dir`` keeps converted copies of GGUF files so later loads skip the
    conversion. ``context_window`` caps the model's trained window.
    """

    weights: WeightFormat | str = "auto"
    context_window: int | None = None
    cache_dir: Path | None = None
    converted_dir: Path | None = None
    prefill_chunk: int = 2048
    block_size: int = 64
    memory_cache_bytes: int = 1 << 30
    disk_cache_bytes: int = 8 << 30
    max_batch: int = 16
    native_kernels: bool = True  # build and use the native decode-attention kernel (kernels/)


def load_engine(
    model_path: str | Path, gguf_file: str | None = None, options: EngineOptions | None = None
) -> Engine:
    """Load a model for the engine. Raises ``InferenceError`` for anything unusable, including a weight
    format the CPU cannot run (checked before the weights are read)."""
    opts = options or EngineOptions()
    resolve_format(str(opts.weights))
    tokenizer, hf_model = load_hf_model(model_path, gguf_file, converted_dir=opts.converted_dir)
    return engine_from_hf(tokenizer, hf_model, model_path=model_path, gguf_file=gguf_file, options=opts)


def choose_format(weights: str, *, native_kernels: bool = True) -> WeightFormat:
    """``resolve_format``, and for ``auto`` one more fact: with the native decode kernels built on this
    host, ``bf16`` weights under fp32 compute decode faster than oneDNN's packed bf16 (measured 2.4x on
    an AVX-512-bf16 host; bench/RESULTS.md), so ``auto`` takes them wherever AVX2 is."""
    fmt = resolve_format(weights)
    if weights == "auto" and fmt == "bf16-packed" and native_kernels and decode_kernels() is not None:
        return "bf16"
    return fmt


def engine_from_hf(
    tokenizer: Any,
    hf_model: Any,
    *,
    model_path: str | Path,
    gguf_file: str | None = None,
    options: EngineOptions | None = None,
) -> Engine:
    """``load_engine`` over an already loaded transformers model (which stays usable: benchmarks and
    parity tests run both from one load). ``model_path``/``gguf_file`` feed the cache fingerprint."""
    opts = options or EngineOptions()
    weights = choose_format(str(opts.weights), native_kernels=opts.native_kernels)
    transformer = transformer_from_hf(hf_model, weights, native_kernels=opts.native_kernels)
    trained = transformer.spec.max_position_embeddings
    window = min(opts.context_window or trained, trained)
    if window < 2:
        raise InferenceError(f"context window {window} is too small")
    fingerprint = model_fingerprint(model_path, gguf_file, transformer.spec, weights)
    prefix = PrefixCache(
        fingerprint,
        block_size=opts.block_size,
        memory_bytes=opts.memory_cache_bytes,
        disk_dir=opts.cache_dir,
        disk_bytes=opts.disk_cache_bytes,
    )
    name = Path(gguf_file).stem if gguf_file else Path(model_path).name
    engine = Engine(
        transformer,
        tokenizer,
        model_id=name,
        context_window=window,
        eos_token_ids=eos_ids(tokenizer, hf_model),
        prefix_cache=prefix,
        prefill_chunk=opts.prefill_chunk,
        max_batch=opts.max_batch,
        weights=weights,
    )
    engine.warmup()
    return engine
