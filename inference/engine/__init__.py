"""The embedded inference engine: our own decoder runtime for dense Llama and the MoE families.

transformers supplies configs, tokenizers, chat templates and reads checkpoints (safetensors folders and
GGUF); this package maps the weights onto one block spec (``spec``), runs them (``model``) with a
preallocated KV cache (``kv_cache``) and a prompt-prefix cache kept in memory and on disk
(``prefix_cache``), and serves requests through the ``TextEngine`` contract (``engine``).

Entry point: ``load_engine(model_path, gguf_file=None, *, dtype="auto", cache_dir=None, ...)``.
"""

from corral.inference.engine.engine import Engine, describe
from corral.inference.engine.load import auto_dtype, engine_from_hf, load_engine

__all__ = ["Engine", "auto_dtype", "describe", "engine_from_hf", "load_engine"]
