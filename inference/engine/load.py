"""``load_engine``: a model folder (or folder + GGUF file) → a ready ``Engine``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch

from corral.inference.engine.engine import Engine
from corral.inference.engine.loading import load_hf_model, model_fingerprint, transformer_from_hf
from corral.inference.engine.prefix_cache import PrefixCache
from corral.inference.errors import InferenceError
from corral.inference.hf.chat_model import eos_ids

__all__ = ["auto_dtype", "engine_from_hf", "load_engine"]

DType = Literal["auto", "float32", "bfloat16"]


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def auto_dtype() -> torch.dtype:
    """bf16 where the CPU multiplies bf16 natively (AVX-512-bf16 or AMX), else fp32: emulated bf16
    matmuls are slower than fp32 ones."""
    flags = _cpu_flags()
    return torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & flags else torch.float32


def _resolve_dtype(dtype: DType | torch.dtype) -> torch.dtype:
    if not isinstance(dtype, str):
        return dtype
    if dtype not in ("auto", "float32", "bfloat16"):
        raise InferenceError(f"dtype {dtype!r} is not one of auto, float32, bfloat16")
    return auto_dtype() if dtype == "auto" else getattr(torch, dtype)


def load_engine(
    model_path: str | Path,
    gguf_file: str | None = None,
    *,
    dtype: DType | torch.dtype = "auto",
    cache_dir: Path | None = None,
    context_window: int | None = None,
    int8: bool = False,
    pack: bool | None = None,
    prefill_chunk: int = 2048,
    block_size: int = 64,
    memory_cache_bytes: int = 1 << 30,
    disk_cache_bytes: int = 8 << 30,
) -> Engine:
    """Load a model for the engine. ``cache_dir`` turns on the on-disk prefix cache (the in-memory one is
    always on); ``context_window`` caps the model's trained window; ``int8`` quantises weights per
    output channel (activations stay in ``dtype``); ``pack`` prepacks weights for oneDNN (default: in
    bf16). Raises ``InferenceError`` for anything unusable."""
    torch_dtype = _resolve_dtype(dtype)
    tokenizer, hf_model = load_hf_model(model_path, gguf_file)
    return engine_from_hf(
        tokenizer,
        hf_model,
        model_path=model_path,
        gguf_file=gguf_file,
        dtype=torch_dtype,
        cache_dir=cache_dir,
        context_window=context_window,
        int8=int8,
        pack=pack,
        prefill_chunk=prefill_chunk,
        block_size=block_size,
        memory_cache_bytes=memory_cache_bytes,
        disk_cache_bytes=disk_cache_bytes,
    )


def engine_from_hf(
    tokenizer: Any,
    hf_model: Any,
    *,
    model_path: str | Path,
    gguf_file: str | None = None,
    dtype: DType | torch.dtype = "auto",
    cache_dir: Path | None = None,
    context_window: int | None = None,
    int8: bool = False,
    pack: bool | None = None,
    prefill_chunk: int = 2048,
    block_size: int = 64,
    memory_cache_bytes: int = 1 << 30,
    disk_cache_bytes: int = 8 << 30,
) -> Engine:
    """``load_engine`` over an already loaded transformers model (which stays usable: benchmarks and
    parity tests run both from one load). ``model_path``/``gguf_file`` feed the cache fingerprint."""
    torch_dtype = _resolve_dtype(dtype)
    if pack is None:
        pack = torch_dtype == torch.bfloat16 and _can_pack_bf16()
    transformer = transformer_from_hf(hf_model, torch_dtype, int8=int8, pack=pack and not int8)
    eos = eos_ids(tokenizer, hf_model)
    trained = transformer.spec.max_position_embeddings
    window = min(context_window or trained, trained)
    if window < 2:
        raise InferenceError(f"context window {window} is too small")
    variant = f"{torch_dtype}:{'int8' if int8 else 'dense'}"
    fingerprint = model_fingerprint(model_path, gguf_file, transformer.spec, variant)
    prefix = PrefixCache(
        fingerprint,
        block_size=block_size,
        memory_bytes=memory_cache_bytes,
        disk_dir=cache_dir,
        disk_bytes=disk_cache_bytes,
    )
    name = Path(gguf_file).stem if gguf_file else Path(model_path).name
    engine = Engine(
        transformer,
        tokenizer,
        model_id=name,
        context_window=window,
        eos_token_ids=eos,
        prefix_cache=prefix,
        prefill_chunk=prefill_chunk,
    )
    engine.warmup()
    return engine


def _can_pack_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
