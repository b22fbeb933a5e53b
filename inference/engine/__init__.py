"""The embedded inference engine: our own decoder runtime for dense Llama and the MoE families.

transformers supplies configs, tokenizers, chat templates and reads checkpoints (safetensors folders and
GGUF); this package maps the weights onto one block spec (``spec``) in the weight format the CPU runs
best (``cpu``), runs them (``model``, with native decode kernels built for the host in ``kernels``) with
a preallocated KV cache (``kv_cache``) and a prompt-prefix
cache kept in memory and on disk (``prefix_cache``), and serves requests through the ``TextEngine``
contract (``engine``).

Entry point: ``load_engine(model_path, gguf_file=None, EngineOptions(...))``.
"""

from corral.inference.engine.cpu import (
    WEIGHT_FORMATS,
    CpuFeatures,
    WeightFormat,
    cpu_features,
    resolve_format,
)
from corral.inference.engine.engine import Engine, RequestStats, describe
from corral.inference.engine.load import EngineOptions, choose_format, engine_from_hf, load_engine

__all__ = [
    "WEIGHT_FORMATS", "CpuFeatures", "Engine", "EngineOptions", "RequestStats", "WeightFormat",
    "choose_format", "cpu_features", "describe", "engine_from_hf", "load_engine", "resolve_format",
]
