"""Checkpoint → ``Transformer``: transformers reads the files (safetensors folders and GGUF, with its
dequantisation and name conversions); this module maps its tensors onto the engine's fused layout.

Checkpoint quirks live here so ``model.py`` stays one code path: fused QKV and gate/up, Llama 4's
transposed expert tensors, tied embeddings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from corral.inference.engine.cpu import WeightFormat, compute_dtype, cpu_features
from corral.inference.engine.kernels import decode_kernels
from corral.inference.engine.model import (
    DenseWeights,
    ExpertBank,
    LayerWeights,
    Linear,
    MoEWeights,
    Transformer,
    Weights,
)
from corral.inference.engine.spec import ModelSpec, rope_inv_freq, spec_from_config
from corral.inference.errors import InferenceError

__all__ = ["file_sha256", "load_hf_model", "model_fingerprint", "transformer_from_hf"]

log = logging.getLogger(__name__)

_FFN_NAMES = ("mlp", "block_sparse_moe", "feed_forward")
_ROUTER_NAMES = ("gate.weight", "router.weight", "router.layer.weight")


def load_hf_model(
    model_path: str | Path, gguf_file: str | None = None, *, converted_dir: Path | None = None
) -> tuple[Any, Any]:
    """Load (tokenizer, transformers model in fp32) offline; errors become ``InferenceError``.

    Reading a GGUF converts and dequantises every tensor (tens of seconds). With ``converted_dir`` the
    converted model is kept there as safetensors under the GGUF's sha256, so the next process loads
    that copy in seconds; a changed GGUF has another hash and is converted afresh."""
    path = Path(model_path)
    if not path.exists():
        raise InferenceError(f"model path {path} does not exist")
    if gguf_file is None or converted_dir is None:
        return _from_pretrained(path, gguf_file)
    source = path / gguf_file
    if not source.is_file():
        raise InferenceError(f"model file {source} does not exist")
    copy = converted_dir / file_sha256(source)
    if (copy / _COMPLETE).is_file():
        try:
            return _from_pretrained(copy, None)
        except InferenceError as exc:  # a damaged copy is rebuilt from the GGUF, not fatal
            log.warning("converted copy %s is unusable (%s); converting %s again", copy, exc, source)
            shutil.rmtree(copy, ignore_errors=True)
    tokenizer, model = _from_pretrained(path, gguf_file)
    _keep_converted(tokenizer, model, copy)
    return tokenizer, model


_COMPLETE = "corral-converted"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _from_pretrained(path: Path, gguf_file: str | None) -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    quiet: Any = hf_logging
    quiet.disable_progress_bar()
    quiet.set_verbosity_error()
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
        model: Any = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise InferenceError(f"cannot load a model from {path}: {exc}") from exc
    return tokenizer, model.eval()


def _keep_converted(tokenizer: Any, model: Any, copy: Path) -> None:
    """Write the converted model to ``copy`` (via a sibling temp folder and a rename, so a reader never
    sees half a copy). A full disk or a read-only data dir costs the next load time, nothing else."""
    tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        # transformers will not save a model it read from GGUF (it counts as quantised), so the
        # converted tensors, the config without its GGUF marker, and the tokenizer are written here.
        from safetensors.torch import save_model

        save_model(model, str(tmp / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE).write_text("ok\n", encoding="ascii")
        tmp.replace(copy)
    except OSError as exc:
        log.warning("could not keep a converted copy of the model at %s: %s", copy, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def transformer_from_hf(model: Any, weights: WeightFormat, *, native_kernels: bool = True) -> Transformer:
    """Map a loaded transformers causal LM onto the engine with its matmul weights in ``weights`` (see
    ``cpu.py``; the caller has checked the CPU runs it). The transformers model can be dropped after.

    With ``native_kernels`` (and a compiler on this host) decode steps use the native attention kernel,
    and formats that store weights compactly under fp32 compute (``bf16``, ``int8``) store the KV cache
    in bf16 too: a decode step at long context reads the cache more than the weights."""
    spec = spec_from_config(model.config)
    dtype = compute_dtype(weights)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    prefix = _model_prefix(state)
    out_emb = model.get_output_embeddings()
    lm_head = out_emb.weight.detach() if out_emb is not None else state[f"{prefix}embed_tokens.weight"]
    layers = [_layer(state, f"{prefix}layers.{i}.", spec, i, dtype) for i in range(spec.num_layers)]
    converted = Weights(
        embed=_cast(state[f"{prefix}embed_tokens.weight"], dtype),
        norm=_cast(state[f"{prefix}norm.weight"], dtype),
        lm_head=Linear(_cast(lm_head, dtype)),
        layers=layers,
    )
    kernel = decode_kernels() if native_kernels else None
    for lin in converted.linears():
        if weights == "int8":
            lin.quantize_int8()
        elif weights == "bf16":
            lin.store_bf16(kernel.linear_bf16 if kernel is not None else None,
                           bf16_gemm=cpu_features().bf16_arithmetic)
        elif weights == "bf16-packed":
            lin.pack()
    inv_freq, scaling = rope_inv_freq(model.config, spec)
    kv_dtype = torch.bfloat16 if kernel is not None and weights in ("bf16", "int8") else dtype
    return Transformer(spec, converted, inv_freq, scaling, dtype, kv_dtype=kv_dtype, decode_kernel=kernel)


def _model_prefix(state: dict[str, torch.Tensor]) -> str:
    for prefix in ("model.", "model.language_model.", "language_model.model.", ""):
        if f"{prefix}embed_tokens.weight" in state:
            return prefix
    raise InferenceError("the checkpoint has no embed_tokens weight: not a decoder the engine knows")


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype).contiguous()


def _req(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return state[key]
    except KeyError:
        raise InferenceError(f"the checkpoint lacks {key}") from None


def _dense(state: dict[str, torch.Tensor], p: str, dtype: torch.dtype) -> DenseWeights:
    gate_up = torch.cat((_req(state, p + "gate_proj.weight"), _req(state, p + "up_proj.weight")), dim=0)
    return DenseWeights(
        Linear(_cast(gate_up, dtype)), Linear(_cast(_req(state, p + "down_proj.weight"), dtype))
    )


def _layer(
    state: dict[str, torch.Tensor], p: str, spec: ModelSpec, i: int, dtype: torch.dtype
) -> LayerWeights:
    a = p + "self_attn."
    qkv = torch.cat([_req(state, f"{a}{n}_proj.weight") for n in "qkv"], dim=0)
    bias = None
    if f"{a}q_proj.bias" in state:
        bias = _cast(torch.cat([state[f"{a}{n}_proj.bias"] for n in "qkv"], dim=0), dtype)
    o_bias = state.get(f"{a}o_proj.bias")
    ffn = next((f"{p}{n}." for n in _FFN_NAMES if any(k.startswith(f"{p}{n}.") for k in state)), None)
    if ffn is None:
        raise InferenceError(f"layer {i} has no feed-forward weights")
    ls = spec.layers[i]
    mlp: DenseWeights | MoEWeights
    if ls.moe is None:
        mlp = _dense(state, ffn, dtype)
    else:
        router = next((state[ffn + n] for n in _ROUTER_NAMES if ffn + n in state), None)
        if router is None:
            raise InferenceError(f"MoE layer {i} has no router weights")
        gate_up = _req(state, ffn + "experts.gate_up_proj")
        down = _req(state, ffn + "experts.down_proj")
        if spec.family == "llama4_text":  # stored [E, H, 2I] and [E, I, H] for bmm
            gate_up, down = gate_up.transpose(1, 2), down.transpose(1, 2)
        shared = None
        for name in ("shared_expert.", "shared_mlp."):
            if ffn + name + "gate_proj.weight" in state:
                shared = _dense(state, ffn + name, dtype)
        shared_gate = state.get(ffn + "shared_expert_gate.weight")
        if (shared is None) != (ls.moe.shared_intermediate_size == 0):
            raise InferenceError(f"MoE layer {i}: the shared expert does not match the config")
        mlp = MoEWeights(
            router=_cast(router, dtype),
            gate_up=ExpertBank(_cast(gate_up, dtype)),
            down=ExpertBank(_cast(down, dtype)),
            shared=shared,
            shared_gate=None if shared_gate is None else _cast(shared_gate, dtype),
        )
    q_norm = state.get(f"{a}q_norm.weight")
    k_norm = state.get(f"{a}k_norm.weight")
    if ls.qk_norm in ("head_rms", "full_rms") and (q_norm is None or k_norm is None):
        raise InferenceError(f"layer {i} lacks its q/k norm weights")
    return LayerWeights(
        attn_norm=_cast(_req(state, p + "input_layernorm.weight"), dtype),
        qkv=Linear(_cast(qkv, dtype), bias),
        o=Linear(
            _cast(_req(state, f"{a}o_proj.weight"), dtype), None if o_bias is None else _cast(o_bias, dtype)
        ),
        q_norm=None if q_norm is None else _cast(q_norm, dtype),
        k_norm=None if k_norm is None else _cast(k_norm, dtype),
        ffn_norm=_cast(_req(state, p + "post_attention_layernorm.weight"), dtype),
        mlp=mlp,
    )


def model_fingerprint(model_path: str | Path, gguf_file: str | None, spec: ModelSpec, variant: str) -> str:
    """A content-derived id for the prefix cache: the spec, the weight format and, per
    weight file, its size and a hash of its first and last MiB. Paths and mtimes do not enter, so copying
    a model keeps its cache and replacing its weights invalidates it."""
    h = hashlib.sha256()
    h.update(spec.to_json().encode())
    h.update(variant.encode())
    path = Path(model_path)
    files = (
        [path / gguf_file]
        if gguf_file
        else sorted(f for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".gguf", ".pt"))
        if path.is_dir()
        else [path]
    )
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(size - (1 << 20))
                h.update(fh.read(1 << 20))
    return h.hexdigest()
