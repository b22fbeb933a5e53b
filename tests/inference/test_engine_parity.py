"""The engine computes what transformers computes: per family, a tiny random fp32 model gives the same
logits for a prefill and 20 greedy decode steps (teacher-forced on transformers' own tokens), also when
the prefill is cut into chunks that straddle Llama 4's attention chunks; and the real SmolLM2 GGUF gives
the same greedy text."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from corral.inference.engine.cpu import WeightFormat, cpu_features
from corral.inference.engine.loading import transformer_from_hf
from corral.inference.engine.spec import spec_from_config
from corral.inference.errors import InferenceError

ATOL = 1e-4
STEPS = 20
PROMPT = 13

COMMON: dict[str, Any] = {
    "vocab_size": 97,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "initializer_range": 0.1,
    "tie_word_embeddings": False,
}


def _configs() -> dict[str, Any]:
    import transformers as tf

    return {
        "llama": tf.LlamaConfig(
            **{**COMMON, "tie_word_embeddings": True}, intermediate_size=96, num_hidden_layers=2
        ),
        # Dense Qwen2 (Qwen2.5-Coder, the default chat model): biases on q, k and v, none on o.
        "qwen2": tf.Qwen2Config(**COMMON, intermediate_size=96, num_hidden_layers=2),
        "mixtral": tf.MixtralConfig(
            **COMMON, intermediate_size=48, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2
        ),
        "mixtral-sliding": tf.MixtralConfig(
            **COMMON, intermediate_size=48, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
            sliding_window=7,
        ),
        "qwen2_moe": tf.Qwen2MoeConfig(
            **COMMON, intermediate_size=80, moe_intermediate_size=32, shared_expert_intermediate_size=48,
            num_hidden_layers=3, num_experts=6, num_experts_per_tok=2, mlp_only_layers=[1],
            norm_topk_prob=False,
        ),
        "qwen3_moe": tf.Qwen3MoeConfig(
            **COMMON, head_dim=16, intermediate_size=80, moe_intermediate_size=32, num_hidden_layers=3,
            num_experts=6, num_experts_per_tok=2, decoder_sparse_step=2, norm_topk_prob=True,
        ),
        "olmoe": tf.OlmoeConfig(
            **COMMON, intermediate_size=32, num_hidden_layers=2, num_experts=6, num_experts_per_tok=2,
            clip_qkv=0.3,
        ),
        "granitemoe": tf.GraniteMoeConfig(
            **COMMON, intermediate_size=32, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
            embedding_multiplier=3.0, residual_multiplier=0.5, attention_multiplier=0.3, logits_scaling=2.0,
        ),
        "llama4_text": tf.Llama4TextConfig(
            **COMMON, head_dim=16, intermediate_size=32, intermediate_size_mlp=64, num_hidden_layers=4,
            num_local_experts=4, num_experts_per_tok=1, interleave_moe_layer_step=2, no_rope_layer_interval=2,
            attention_chunk_size=8, use_qk_norm=True, attn_temperature_tuning=True, floor_scale=4,
            attn_scale=0.3, attention_bias=False,
        ),
    }


CONFIGS = [
    "granitemoe", "llama", "llama4_text", "mixtral", "mixtral-sliding", "olmoe", "qwen2", "qwen2_moe",
    "qwen3_moe",
]


def _require(fmt: WeightFormat) -> None:
    """Skip, saying why, where this CPU cannot run ``fmt`` (each path is tested where it exists)."""
    why = cpu_features().refusal(fmt)
    if why is not None:
        pytest.skip(f"this CPU ({cpu_features().describe()}) has no {fmt} path: {why}")


def _reference(name: str) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = _configs()[name]
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():  # transformers initialises biases to zero, which would hide a missing bias
        for pname, param in model.named_parameters():
            if pname.endswith(".bias"):
                param.normal_(0.0, 0.1)
    return model.eval()


def _greedy_reference(model: Any, prompt: torch.Tensor) -> tuple[list[int], list[torch.Tensor]]:
    with torch.inference_mode():
        out = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=STEPS, min_new_tokens=STEPS,
            do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0,
            eos_token_id=None,
        )
    return out.sequences[0, prompt.shape[1]:].tolist(), [lg[0] for lg in out.logits]


@pytest.mark.parametrize("name", CONFIGS)
def test_prefill_and_decode_logits_match_transformers(name: str) -> None:
    ref = _reference(name)
    engine = transformer_from_hf(ref, "fp32")
    torch.manual_seed(1)
    prompt = torch.randint(1, COMMON["vocab_size"], (1, PROMPT))
    with torch.inference_mode():
        ref_prefill = ref(prompt).logits[0]
    tokens, ref_steps = _greedy_reference(ref, prompt)

    cache = engine.new_cache(PROMPT + STEPS + 1)
    ours = engine.forward(prompt, cache, 0, all_logits=True)
    torch.testing.assert_close(ours, ref_prefill, atol=ATOL, rtol=1e-4)
    logits = ours[-1]
    for step, (token, ref_logits) in enumerate(zip(tokens, ref_steps, strict=True)):
        torch.testing.assert_close(logits, ref_logits, atol=ATOL, rtol=1e-4, msg=f"{name} decode step {step}")
        assert int(logits.argmax()) == token
        logits = engine.forward(torch.tensor([[token]]), cache, cache.length)[0]


@pytest.mark.parametrize(
    "name", ["granitemoe", "llama", "llama4_text", "mixtral-sliding", "qwen2", "qwen2_moe", "qwen3_moe"]
)
def test_chunked_prefill_matches_one_shot(name: str) -> None:
    """Prefill cut into 5-token pieces (crossing Llama 4's 8-token attention chunks and the 7-token
    sliding window; under full attention each later piece attends to the cached prefix and to itself in
    two passes merged by log-sum-exp) leaves the same cache and logits as one pass."""
    engine = transformer_from_hf(_reference(name), "fp32")
    torch.manual_seed(2)
    prompt = torch.randint(1, COMMON["vocab_size"], (1, 23))
    whole = engine.new_cache(32)
    expected = engine.forward(prompt, whole, 0, all_logits=True)
    pieces = engine.new_cache(32)
    got = torch.cat(
        [engine.forward(prompt[:, i : i + 5], pieces, i, all_logits=True) for i in range(0, 23, 5)]
    )
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(pieces.positions(0, 23), whole.positions(0, 23), atol=ATOL, rtol=1e-4)


def test_llama4_spec_reads_every_feature() -> None:
    spec = spec_from_config(_configs()["llama4_text"])
    assert [layer.use_rope for layer in spec.layers] == [True, False, True, False]
    assert [layer.moe is not None for layer in spec.layers] == [False, True, False, True]
    assert [layer.attention for layer in spec.layers] == ["chunked", "full", "chunked", "full"]
    assert [layer.qk_norm for layer in spec.layers] == ["l2", "none", "l2", "none"]
    assert [layer.temperature_tuning for layer in spec.layers] == [False, True, False, True]
    assert spec.rope_style == "interleaved"
    moe = spec.layers[1].moe
    assert moe is not None and moe.routing == "sigmoid_topk_input_scaled" and moe.shared_intermediate_size


def test_unsupported_family_is_refused_with_its_name() -> None:
    from transformers import GPT2Config

    with pytest.raises(InferenceError, match="gpt2"):
        spec_from_config(GPT2Config())


@pytest.mark.parametrize(("fmt", "mean", "floor"), [("bf16", 0.99, 0.99), ("int8", 0.99, 0.95)])
@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3_moe"])
def test_stored_weights_follow_fp32(name: str, fmt: WeightFormat, mean: float, floor: float) -> None:
    """bf16 weights under fp32 compute (the default on AVX2-only CPUs) and int8 weights track fp32, in
    prefill (upcast or dequantised GEMM) and in the decode step (the one-row GEMV)."""
    ref = _reference(name)
    full = transformer_from_hf(ref, "fp32")
    stored = transformer_from_hf(ref, fmt)
    prompt = torch.randint(1, COMMON["vocab_size"], (1, PROMPT))
    a = full.forward(prompt, full.new_cache(PROMPT), 0, all_logits=True)
    b = stored.forward(prompt, stored.new_cache(PROMPT), 0, all_logits=True)
    assert b.dtype == torch.float32
    similarity = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert similarity.mean() > mean and similarity.min() > floor
    cache = stored.new_cache(PROMPT)
    stored.forward(prompt[:, :-1], cache, 0)
    step = stored.forward(prompt[:, -1:], cache, PROMPT - 1)
    assert torch.nn.functional.cosine_similarity(step[0], a[-1], dim=0) > floor


@pytest.mark.parametrize("name", ["llama4_text", "qwen3_moe"])
def test_bf16_packed_weights_follow_fp32(name: str) -> None:
    """bf16 with oneDNN-prepacked weights (the default on AVX-512-bf16/AMX CPUs) tracks fp32."""
    _require("bf16-packed")
    ref = _reference(name)
    full = transformer_from_hf(ref, "fp32")
    packed = transformer_from_hf(ref, "bf16-packed")
    prompt = torch.randint(1, COMMON["vocab_size"], (1, PROMPT))
    a = full.forward(prompt, full.new_cache(PROMPT + 1), 0, all_logits=True)
    b = packed.forward(prompt, packed.new_cache(PROMPT + 1), 0, all_logits=True).float()
    assert torch.nn.functional.cosine_similarity(a, b, dim=-1).mean() > 0.98
    step = torch.tensor([[int(a[-1].argmax())]])
    c = packed.forward(step, packed.new_cache(PROMPT + 1), 0)  # decode path on a fresh cache: runs
    assert torch.isfinite(c.float()).all()


@pytest.mark.parametrize("name", CONFIGS)
def test_batched_decode_step_equals_one_sequence_at_a_time(name: str) -> None:
    """Concurrent requests decode in one ``forward_batch``: three sequences at different lengths (across
    Llama 4's attention chunks and the sliding window) get the logits and caches they get alone."""
    engine = transformer_from_hf(_reference(name), "fp32")
    torch.manual_seed(2)
    lengths = [3, 9, PROMPT]
    prompts = [torch.randint(1, COMMON["vocab_size"], (1, n)) for n in lengths]
    alone, together = [], []
    for prompt in prompts:
        for caches in (alone, together):
            cache = engine.new_cache(PROMPT + 4)
            engine.forward(prompt, cache, 0)
            caches.append(cache)
    tokens = [5, 17, 42]
    expected = torch.cat(
        [engine.forward(torch.tensor([[t]]), c, c.length) for t, c in zip(tokens, alone, strict=True)]
    )
    got = engine.forward_batch(tokens, together)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-4)
    for a, b in zip(alone, together, strict=True):
        assert a.length == b.length
        torch.testing.assert_close(b.positions(0, b.length), a.positions(0, a.length), atol=ATOL, rtol=1e-4)


def test_batched_decode_refuses_a_full_cache_before_any_write() -> None:
    engine = transformer_from_hf(_reference("llama"), "fp32")
    roomy, full = engine.new_cache(8), engine.new_cache(4)
    engine.forward(torch.tensor([[1, 2, 3]]), roomy, 0)
    engine.forward(torch.tensor([[1, 2, 3, 4]]), full, 0)
    before = roomy.positions(0, 4).clone()  # the prompt and the slot the step would write
    with pytest.raises(InferenceError, match="exceed"):
        engine.forward_batch([7, 7], [roomy, full])
    assert roomy.length == 3
    torch.testing.assert_close(roomy.positions(0, 4), before, rtol=0, atol=0, equal_nan=True)


def test_routing_counts_give_each_moe_layer_its_expert_shares() -> None:
    engine = transformer_from_hf(_reference("qwen3_moe"), "fp32")
    prompt = torch.randint(1, COMMON["vocab_size"], (1, PROMPT))
    cache = engine.new_cache(PROMPT + 1)
    engine.forward(prompt, cache, 0)  # grouped path: 13 tokens x top-2
    engine.forward(torch.tensor([[3]]), cache, cache.length)  # decode path: 1 token x top-2
    shares = engine.routed.shares()
    assert sorted(shares) == [1]  # decoder_sparse_step=2 over 3 layers: layer 1 is the MoE layer
    assert len(shares[1]) == 6 and abs(sum(shares[1]) - 1.0) < 1e-9 and max(shares[1]) < 1.0


@pytest.mark.parametrize("fmt", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["llama", "llama4_text", "mixtral-sliding", "qwen3_moe"])
def test_native_kernels_and_torch_operations_agree(name: str, fmt: WeightFormat) -> None:
    """A host without a compiler runs torch's operations where the native decode kernels would run
    (attention, RoPE with the cache write, norms, the gated activation, bf16 projections). In fp32 both
    give the same decode logits; with bf16 weights the native path follows fp32 at least as closely
    (its projections keep fp32 outputs, where torch's bf16 GEMV rounds them to bf16)."""
    ref = _reference(name)
    native = transformer_from_hf(ref, fmt)
    if native.decode_kernel is None:
        pytest.skip("no C++ compiler or ninja on this host: only torch's operations exist here")
    plain = transformer_from_hf(ref, fmt, native_kernels=False)
    full = transformer_from_hf(ref, "fp32", native_kernels=False)
    assert plain.decode_kernel is None and plain.kv_dtype == plain.dtype
    models = (full, native, plain)
    torch.manual_seed(2)
    prompt = torch.randint(1, COMMON["vocab_size"], (1, PROMPT))
    caches = [m.new_cache(PROMPT + STEPS) for m in models]
    logits = [m.forward(prompt, c, 0) for m, c in zip(models, caches, strict=True)]
    for _ in range(STEPS):
        token = torch.tensor([[int(logits[0][0].argmax())]])
        logits = [m.forward(token, c, c.length) for m, c in zip(models, caches, strict=True)]
        if fmt == "fp32":
            torch.testing.assert_close(logits[1], logits[2], atol=ATOL, rtol=1e-4)
            continue
        native_cos, plain_cos = (torch.nn.functional.cosine_similarity(lg[0], logits[0][0], dim=0)
                                 for lg in logits[1:])
        assert native_cos > 0.9999 and native_cos >= plain_cos - 1e-6, (native_cos, plain_cos)
