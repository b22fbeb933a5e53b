"""One block spec for every supported decoder family, read from a transformers config.

Families: dense Llama (SmolLM2), Qwen2/Qwen3 dense, Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, Granite-MoE and
Llama-4 text. What differs between them is data here, not code paths in ``model.py``: where the norms sit,
how the router turns logits into weights, which layers are MoE, which skip RoPE or attend in chunks.

Letters in shape comments elsewhere: H hidden size, D head dim, Q query heads, K key/value heads, E experts,
I expert (or MLP) intermediate size, V vocabulary, T tokens.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from corral.inference.errors import InferenceError

__all__ = ["SUPPORTED_FAMILIES", "LayerSpec", "MoESpec", "ModelSpec", "spec_from_config"]

Routing = Literal["softmax_topk", "topk_softmax", "sigmoid_topk_input_scaled"]
QKNorm = Literal["none", "head_rms", "full_rms", "l2"]
RopeStyle = Literal["half", "interleaved"]

SUPPORTED_FAMILIES = (
    "llama",
    "qwen2",
    "qwen3",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "granitemoe",
    "llama4_text",
)
_ACTIVATIONS = ("silu", "swish", "gelu", "gelu_pytorch_tanh")


@dataclass(frozen=True)
class MoESpec:
    """A routed-experts block. ``routing`` names how router logits become per-token expert weights:

    - ``softmax_topk``: softmax over all experts, keep the top k (renormalised when ``norm_topk``);
      Mixtral, Qwen-MoE, OLMoE.
    - ``topk_softmax``: top k logits, softmax over those k; Granite-MoE.
    - ``sigmoid_topk_input_scaled``: top k logits through a sigmoid, and the weight scales the expert's
      *input*, not its output; Llama 4.
    """

    num_experts: int
    top_k: int
    intermediate_size: int
    routing: Routing
    norm_topk: bool
    shared_intermediate_size: int  # 0: no shared expert
    shared_gate: bool  # the shared expert's output is scaled by sigmoid(x @ w_gate) (Qwen2-MoE)


@dataclass(frozen=True)
class LayerSpec:
    use_rope: bool
    attention: Literal["full", "chunked", "sliding"]
    window: int  # chunk size or sliding window; 0 for full attention
    qk_norm: QKNorm
    temperature_tuning: bool  # scale queries by log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1
    mlp_intermediate_size: int  # dense MLP width; 0 when the layer is MoE
    moe: MoESpec | None


@dataclass(frozen=True)
class ModelSpec:
    family: str
    vocab_size: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_eps: float
    activation: str
    rope_style: RopeStyle
    rope_theta: float
    rope_parameters: str  # the config's rope parameters as JSON, for the fingerprint and the inv_freq
    max_position_embeddings: int
    attention_bias: bool
    attention_out_bias: bool
    softmax_scale: float
    clip_qkv: float  # 0: no clipping
    embedding_multiplier: float
    residual_multiplier: float
    logits_divisor: float
    floor_scale: float
    attn_scale: float
    tie_embeddings: bool
    layers: tuple[LayerSpec, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _get(config: Any, name: str, default: Any = None) -> Any:
    value = getattr(config, name, default)
    return default if value is None else value


def spec_from_config(config: Any) -> ModelSpec:
    """Build the spec from a transformers config (``PretrainedConfig``); raise ``InferenceError`` for a
    family or an option the engine does not implement, so it never silently computes something else."""
    family = str(_get(config, "model_type", ""))
    if family == "llama4":  # a multimodal checkpoint: take its text half
        config = config.text_config
        family = "llama4_text"
    if family not in SUPPORTED_FAMILIES:
        raise InferenceError(
            f"model family {family!r} is not supported by the engine "
            f"(supported: {', '.join(SUPPORTED_FAMILIES)})"
        )
    activation = str(_get(config, "hidden_act", "silu"))
    if activation not in _ACTIVATIONS:
        raise InferenceError(f"activation {activation!r} is not supported")
    hidden = int(config.hidden_size)
    num_heads = int(config.num_attention_heads)
    num_kv = int(_get(config, "num_key_value_heads", num_heads))
    head_dim = int(_get(config, "head_dim", hidden // num_heads))
    num_layers = int(config.num_hidden_layers)
    rope = dict(_get(config, "rope_parameters", {}) or {})
    rope_type = str(rope.get("rope_type", "default"))
    if rope_type not in ("default", "linear", "llama3", "yarn"):
        raise InferenceError(
            f"RoPE type {rope_type!r} is not supported (dynamic scaling changes with length)"
        )
    theta = float(rope.get("rope_theta", _get(config, "rope_theta", 10000.0)))

    layers = tuple(_layer_spec(config, family, i, num_layers) for i in range(num_layers))
    attn_bias = bool(_get(config, "attention_bias", False))
    out_bias = attn_bias
    if family in ("qwen2", "qwen2_moe"):
        attn_bias = bool(_get(config, "qkv_bias", True)) if family == "qwen2_moe" else True
        out_bias = False
    softmax_scale = head_dim**-0.5
    if family == "granitemoe":
        softmax_scale = float(_get(config, "attention_multiplier", softmax_scale))
    return ModelSpec(
        family=family,
        vocab_size=int(config.vocab_size),
        hidden_size=hidden,
        num_heads=num_heads,
        num_kv_heads=num_kv,
        head_dim=head_dim,
        rms_eps=float(_get(config, "rms_norm_eps", 1e-6)),
        activation=activation,
        rope_style="interleaved" if family == "llama4_text" else "half",
        rope_theta=theta,
        rope_parameters=json.dumps(rope, sort_keys=True, default=str),
        max_position_embeddings=int(_get(config, "max_position_embeddings", 2048)),
        attention_bias=attn_bias,
        attention_out_bias=out_bias,
        softmax_scale=softmax_scale,
        clip_qkv=float(_get(config, "clip_qkv", 0.0)) if family == "olmoe" else 0.0,
        embedding_multiplier=float(_get(config, "embedding_multiplier", 1.0))
        if family == "granitemoe"
        else 1.0,
        residual_multiplier=float(_get(config, "residual_multiplier", 1.0))
        if family == "granitemoe"
        else 1.0,
        logits_divisor=float(_get(config, "logits_scaling", 1.0)) if family == "granitemoe" else 1.0,
        floor_scale=float(_get(config, "floor_scale", 8192.0)),
        attn_scale=float(_get(config, "attn_scale", 0.1)),
        tie_embeddings=bool(_get(config, "tie_word_embeddings", False)),
        layers=layers,
    )


def _layer_spec(config: Any, family: str, i: int, num_layers: int) -> LayerSpec:
    use_rope = True
    attention: Literal["full", "chunked", "sliding"] = "full"
    window = 0
    qk_norm: QKNorm = "none"
    temperature = False
    if family in ("qwen3", "qwen3_moe"):
        qk_norm = "head_rms"
    elif family == "olmoe":
        qk_norm = "full_rms"
    layer_types = list(_get(config, "layer_types", []) or [])
    if family == "llama4_text":
        use_rope = bool(config.no_rope_layers[i])
        if layer_types and layer_types[i] == "chunked_attention":
            attention, window = "chunked", int(config.attention_chunk_size)
        if use_rope and bool(_get(config, "use_qk_norm", False)):
            qk_norm = "l2"
        temperature = bool(_get(config, "attn_temperature_tuning", False)) and not use_rope
    elif (layer_types and layer_types[i] == "sliding_attention") or (
        family == "mixtral" and _get(config, "sliding_window", None)
    ):
        attention, window = "sliding", int(config.sliding_window)

    moe = _moe_spec(config, family, i)
    if moe is None:
        size_name = "intermediate_size_mlp" if family == "llama4_text" else "intermediate_size"
        mlp_size = int(getattr(config, size_name))
    else:
        mlp_size = 0
    return LayerSpec(use_rope, attention, window, qk_norm, temperature, mlp_size, moe)


def _moe_spec(config: Any, family: str, i: int) -> MoESpec | None:
    if family in ("llama", "qwen2", "qwen3"):
        return None
    if family == "llama4_text":
        if i not in list(config.moe_layers):
            return None
        return MoESpec(
            num_experts=int(config.num_local_experts),
            top_k=int(config.num_experts_per_tok),
            intermediate_size=int(config.intermediate_size),
            routing="sigmoid_topk_input_scaled",
            norm_topk=False,
            shared_intermediate_size=int(config.intermediate_size),
            shared_gate=False,
        )
    if family in ("qwen2_moe", "qwen3_moe"):
        sparse_step = int(_get(config, "decoder_sparse_step", 1))
        dense_only = i in list(_get(config, "mlp_only_layers", []) or [])
        if dense_only or int(config.num_experts) <= 0 or (i + 1) % sparse_step != 0:
            return None
        shared = int(_get(config, "shared_expert_intermediate_size", 0)) if family == "qwen2_moe" else 0
        return MoESpec(
            num_experts=int(config.num_experts),
            top_k=int(config.num_experts_per_tok),
            intermediate_size=int(config.moe_intermediate_size),
            routing="softmax_topk",
            norm_topk=bool(_get(config, "norm_topk_prob", False)),
            shared_intermediate_size=shared,
            shared_gate=shared > 0,
        )
    if family == "olmoe":
        return MoESpec(
            num_experts=int(config.num_experts),
            top_k=int(config.num_experts_per_tok),
            intermediate_size=int(config.intermediate_size),
            routing="softmax_topk",
            norm_topk=bool(_get(config, "norm_topk_prob", False)),
            shared_intermediate_size=0,
            shared_gate=False,
        )
    # mixtral, granitemoe
    return MoESpec(
        num_experts=int(config.num_local_experts),
        top_k=int(config.num_experts_per_tok),
        intermediate_size=int(config.intermediate_size),
        routing="topk_softmax" if family == "granitemoe" else "softmax_topk",
        norm_topk=family == "mixtral",
        shared_intermediate_size=0,
        shared_gate=False,
    )


def rope_inv_freq(config: Any, spec: ModelSpec) -> tuple[Any, float]:
    """Inverse frequencies ``[D/2]`` and the attention scaling factor of the model's RoPE variant."""
    import torch

    rope = json.loads(spec.rope_parameters)
    rope_type = str(rope.get("rope_type", "default"))
    if rope_type == "default":
        dim = spec.head_dim
        inv = 1.0 / (spec.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        return inv, 1.0
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if config.model_type == "llama4":
        config = config.text_config
    inv, scaling = ROPE_INIT_FUNCTIONS[rope_type](config, None)
    if not math.isfinite(float(scaling)):
        raise InferenceError(f"RoPE scaling factor {scaling} is not finite")
    return inv.float(), float(scaling)
