"""The engine's runtime through the ``TextEngine`` contract: greedy output equal to transformers', chunked
prefill, streaming, stop strings, sampling, constraints, many threads, and refusals of bad input."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from corral.inference.chat import build_prompt
from corral.inference.decoding import Penalties
from corral.inference.engine import Engine, EngineOptions, describe, engine_from_hf, load_engine
from corral.inference.engine.batching import DecodeBatcher
from corral.inference.engine.loading import load_hf_model
from corral.inference.errors import ContextOverflowError, InferenceError
from corral.inference.generation import SamplingParams, TextEngine


@pytest.fixture(scope="module")
def tiny(tiny_chat_model: Path) -> tuple[Any, Any, Engine]:
    """(tokenizer, transformers reference, engine) over the tiny random Llama; one load for the module."""
    tok, hf = load_hf_model(tiny_chat_model)
    engine = engine_from_hf(tok, hf, model_path=tiny_chat_model, options=EngineOptions(weights="fp32"))
    return tok, hf, engine


def _prompt(engine: Engine) -> list[int]:
    return build_prompt(engine.tokenizer, [{"role": "user", "content": "Name three colours of the rainbow."}])


def _hf_greedy(hf: Any, prompt: Sequence[int], n: int) -> list[int]:
    ids = torch.tensor([list(prompt)])
    with torch.inference_mode():
        out = hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=0, eos_token_id=None,
        )
    return [int(t) for t in out[0, len(prompt):]]


def test_engine_meets_the_contract_and_describes_itself(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    contract: TextEngine = engine  # mypy checks the protocol in engine.py; here the names exist
    assert callable(contract.stream) and callable(contract.generate) and contract.tokenizer is not None
    assert engine.context_window == 2048
    assert engine.count_tokens("hello world") == 2
    facts = describe(engine)
    assert facts["family"] == "llama" and facts["layers"] == 2 and facts["active_bytes_per_token"] > 0


def test_greedy_tokens_equal_transformers_generate(tiny: tuple[Any, Any, Engine]) -> None:
    _, hf, engine = tiny
    prompt = _prompt(engine)
    result = engine.generate(prompt, SamplingParams(max_tokens=24))
    reference = _hf_greedy(hf, prompt, 24)
    assert result.token_ids == reference[: len(result.token_ids)]
    if result.finish_reason == "stop":  # stopped on an end-of-turn id, which transformers also chose
        assert reference[len(result.token_ids)] in engine.eos_token_ids
    else:
        assert result.finish_reason == "length" and len(result.token_ids) == 24
    assert result.prompt_tokens == len(prompt) and result.prefill_s > 0


def test_chunked_prefill_gives_the_same_answer(tiny: tuple[Any, Any, Engine]) -> None:
    tok, _, engine = tiny
    small = Engine(
        engine.model, tok, model_id="chunks", context_window=2048, eos_token_ids=engine.eos_token_ids,
        prefill_chunk=7,
    )
    prompt = _prompt(engine) * 3
    params = SamplingParams(max_tokens=10)
    assert small.generate(prompt, params).token_ids == engine.generate(prompt, params).token_ids


def test_stream_pieces_add_up_to_generate(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    prompt = _prompt(engine)
    params = SamplingParams(max_tokens=16)
    chunks = list(engine.stream(prompt, params))
    whole = engine.generate(prompt, params)
    assert "".join(c.text for c in chunks) == whole.text
    assert [t for c in chunks for t in c.token_ids] == whole.token_ids
    assert chunks[-1].finish_reason == whole.finish_reason
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_stop_string_cuts_the_text(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    prompt = _prompt(engine)
    full = engine.generate(prompt, SamplingParams(max_tokens=20))
    assert len(full.text) > 6
    stop = full.text[3:6]
    cut = engine.generate(prompt, SamplingParams(max_tokens=20, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    streamed = "".join(c.text for c in engine.stream(prompt, SamplingParams(max_tokens=20, stop=(stop,))))
    assert streamed == cut.text


def test_sampling_is_seeded_and_top_p_narrows_to_greedy(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    prompt = _prompt(engine)
    a = engine.generate(prompt, SamplingParams(max_tokens=12, temperature=1.5, seed=7))
    b = engine.generate(prompt, SamplingParams(max_tokens=12, temperature=1.5, seed=7))
    assert a.token_ids == b.token_ids
    greedy = engine.generate(prompt, SamplingParams(max_tokens=12))
    narrow = engine.generate(prompt, SamplingParams(max_tokens=12, temperature=1.0, top_p=1e-9, seed=3))
    assert narrow.token_ids == greedy.token_ids


class ScriptedConstraint:
    """Forces ``forced`` first, then allows only ``allowed`` ids for ``steps`` tokens, then is finished."""

    def __init__(self, forced: list[int], allowed: list[int], steps: int) -> None:
        self._forced = list(forced)
        self._allowed = allowed
        self._steps = steps
        self.seen: list[int] = []

    def allowed_mask(self, vocab_size: int) -> torch.Tensor:
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        mask[self._allowed] = True
        return mask

    def forced(self) -> list[int]:
        return list(self._forced) if not self.seen else []

    def advance(self, token_ids: Sequence[int]) -> None:
        self.seen.extend(token_ids)

    def is_finished(self) -> bool:
        return len(self.seen) >= len(self._forced) + self._steps


def test_constraint_forces_masks_and_finishes(tiny: tuple[Any, Any, Engine]) -> None:
    tok, _, engine = tiny
    forced = tok("hello there", add_special_tokens=False)["input_ids"]
    allowed = tok(" red green blue", add_special_tokens=False)["input_ids"]
    constraint = ScriptedConstraint(forced, allowed, steps=4)
    result = engine.generate(_prompt(engine), SamplingParams(max_tokens=30), constraint)
    assert result.token_ids[: len(forced)] == forced
    assert set(result.token_ids[len(forced):]) <= set(allowed)
    assert len(result.token_ids) == len(forced) + 4
    assert constraint.seen == result.token_ids
    assert result.finish_reason == "stop"


def test_constraint_that_allows_nothing_ends_the_request(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    result = engine.generate(_prompt(engine), SamplingParams(max_tokens=5), ScriptedConstraint([], [], 9))
    assert result.finish_reason == "constraint" and result.token_ids == []


def test_threads_get_the_answers_they_would_get_alone(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    prompts = [
        build_prompt(engine.tokenizer, [{"role": "user", "content": f"Count to {n}."}]) for n in range(4)
    ]
    params = SamplingParams(max_tokens=12)
    alone = [engine.generate(p, params).token_ids for p in prompts]
    together: list[list[int]] = [[] for _ in prompts]

    def run(i: int) -> None:
        together[i] = engine.generate(prompts[i], params).token_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert together == alone


def test_an_abandoned_stream_frees_its_cache(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    prompt = _prompt(engine)
    stream = engine.stream(prompt, SamplingParams(max_tokens=50))
    next(iter(stream))
    stream.close()  # type: ignore[attr-defined]  # a client hung up after the first chunk
    again = engine.generate(prompt, SamplingParams(max_tokens=4))
    assert len(again.token_ids) <= 4 and again.prompt_tokens == len(prompt)


@pytest.mark.parametrize(
    ("prompt", "params", "match"),
    [
        ([], SamplingParams(), "empty"),
        ([1, -5], SamplingParams(), "outside the vocabulary"),
        ([1, 10**9], SamplingParams(), "outside the vocabulary"),
        (["x", 2], SamplingParams(), "integers"),
        ([1, 2], SamplingParams(max_tokens=0), "max_tokens"),
        ([1, 2], SamplingParams(temperature=-1.0), "temperature"),
        ([1, 2], SamplingParams(top_p=0.0), "top_p"),
        ([1, 2], SamplingParams(repetition_penalty=0.0), "repetition_penalty"),
        ([1, 2], SamplingParams(frequency_penalty=2.5), "frequency_penalty"),
        ([1, 2], SamplingParams(presence_penalty=-3.0), "presence_penalty"),
    ],
)
def test_bad_requests_are_refused_before_any_work(
    tiny: tuple[Any, Any, Engine], prompt: list[Any], params: SamplingParams, match: str
) -> None:
    _, _, engine = tiny
    with pytest.raises(InferenceError, match=match):
        engine.stream(prompt, params)
    with pytest.raises(InferenceError, match=match):
        engine.generate(prompt, params)


def test_prompt_over_the_window_is_an_overflow(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    with pytest.raises(ContextOverflowError, match="2048-token window"):
        engine.generate([1] * 1_000_000, SamplingParams())


def test_generation_stops_at_the_window(tiny: tuple[Any, Any, Engine]) -> None:
    tok, _, engine = tiny
    short = Engine(engine.model, tok, model_id="short", context_window=40, eos_token_ids=[-1])
    result = short.generate([5] * 30, SamplingParams(max_tokens=100))
    assert result.finish_reason == "length" and len(result.token_ids) == 10


def test_bf16_engine_runs_close_to_fp32(tiny: tuple[Any, Any, Engine], tiny_chat_model: Path) -> None:
    tok, hf, engine = tiny
    bf16 = engine_from_hf(tok, hf, model_path=tiny_chat_model, options=EngineOptions(weights="bf16"))
    prompt = torch.tensor([_prompt(engine)])
    a = engine.model.forward(prompt, engine.model.new_cache(prompt.shape[1]), 0).float()
    b = bf16.model.forward(prompt, bf16.model.new_cache(prompt.shape[1]), 0).float()
    assert torch.isfinite(b).all()
    assert torch.nn.functional.cosine_similarity(a, b).item() > 0.98


def test_unloadable_paths_are_inference_errors(tmp_path: Path) -> None:
    with pytest.raises(InferenceError, match="does not exist"):
        load_engine(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InferenceError):
        load_engine(tmp_path)
    with pytest.raises(InferenceError, match="weight format 'float8'"):
        load_engine(tmp_path, options=EngineOptions(weights="float8"))


@pytest.mark.model
def test_smollm2_gguf_greedy_text_equals_transformers() -> None:
    """The real default model: the engine (fp32) writes the same greedy answer as transformers."""
    from corral.core.config import Settings

    folder, gguf = Settings(chat_model="smollm2-135m").resolved_chat_model()
    tok, hf = load_hf_model(folder, gguf)
    engine = engine_from_hf(tok, hf, model_path=folder, gguf_file=gguf, options=EngineOptions(weights="fp32"))
    prompt = build_prompt(engine.tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    ours = engine.generate(prompt, SamplingParams(max_tokens=24))
    reference = _hf_greedy(hf, prompt, 24)
    assert ours.token_ids == reference[: len(ours.token_ids)]
    assert ours.text == tok.decode(reference[: len(ours.token_ids)], skip_special_tokens=True)
    assert "Paris" in ours.text


@pytest.mark.model
def test_qwen25_coder_gguf_greedy_text_equals_transformers(tmp_path: Path) -> None:
    """The default chat model, Qwen2.5-Coder-0.5B (dense Qwen2 with q/k/v biases, Q4_K, Q5_0, Q6_K and
    Q8_0 tensors dequantised on load): the engine in fp32 writes transformers' greedy answer token for
    token, and in its default format (bf16 weights, native kernels where built) the same first words."""
    from corral.core.config import Settings

    folder, gguf = Settings(chat_model="qwen2.5-coder-0.5b", data_dir=tmp_path).resolved_chat_model()
    tok, hf = load_hf_model(folder, gguf)
    assert hf.config.model_type == "qwen2" and hf.model.layers[0].self_attn.q_proj.bias is not None
    prompt = build_prompt(tok, [{"role": "user", "content": "Write a Python expression that reverses "
                                 "the string s. Reply with the expression only."}])
    reference = _hf_greedy(hf, prompt, 12)
    exact = engine_from_hf(tok, hf, model_path=folder, gguf_file=gguf, options=EngineOptions(weights="fp32"))
    ours = exact.generate(prompt, SamplingParams(max_tokens=12))
    assert ours.token_ids == reference[: len(ours.token_ids)]
    assert "[::-1]" in ours.text
    default = engine_from_hf(tok, hf, model_path=folder, gguf_file=gguf, options=EngineOptions())
    assert "[::-1]" in default.generate(prompt, SamplingParams(max_tokens=12)).text


def test_concurrent_decode_steps_share_one_forward_pass(tiny: tuple[Any, Any, Engine]) -> None:
    """Two requests decoding at once: their one-token steps meet in one batched pass and each gets the
    logits it would get alone."""
    _, _, engine = tiny
    model = engine.model
    batcher = DecodeBatcher(model, gather_s=10.0)  # a generous gather: both steps surely meet
    prompts = [[3, 4, 5, 6], [7, 8, 9]]
    alone = []
    for p in prompts:
        cache = model.new_cache(8)
        model.forward(torch.tensor([p]), cache, 0)
        alone.append(model.forward(torch.tensor([[11]]), cache, cache.length)[0])
    both_decoding = threading.Barrier(2)
    got: list[torch.Tensor | None] = [None, None]

    def request(i: int) -> None:
        cache = model.new_cache(8)
        model.forward(torch.tensor([prompts[i]]), cache, 0)
        with batcher.decoding():
            both_decoding.wait(timeout=30)
            got[i] = batcher.step(11, cache)[0]

    threads = [threading.Thread(target=request, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert batcher.stats()["largest_batch"] == 2 and batcher.stats()["batches"] == 1
    for mine, reference in zip(got, alone, strict=True):
        assert mine is not None
        torch.testing.assert_close(mine, reference, atol=1e-4, rtol=1e-4)


def test_a_request_decoding_alone_never_waits_for_the_batcher(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    batcher = DecodeBatcher(engine.model, gather_s=30.0)
    cache = engine.model.new_cache(4)
    engine.model.forward(torch.tensor([[1, 2]]), cache, 0)
    with batcher.decoding():
        logits = batcher.step(3, cache)
    assert logits.shape == (1, engine.vocab_size) and cache.length == 3
    assert batcher.stats()["batches"] == 0  # ran on the caller's thread


def test_stats_count_requests_tokens_and_the_prefix_cache(tiny: tuple[Any, Any, Engine]) -> None:
    _, _, engine = tiny
    before = engine.stats()["requests"]
    engine.generate(_prompt(engine), SamplingParams(max_tokens=6))
    stats = engine.stats()
    assert stats["requests"] == before + 1
    assert stats["tokens_per_second"] > 0 and 0.0 <= stats["prefix_cache_hit_rate"] <= 1.0
    assert stats["expert_utilisation"] == {}  # a dense model has no experts to report
    assert set(stats["batching"]) >= {"batches", "mean_batch", "largest_batch"}


def test_repetition_penalty_decodes_as_transformers_does(tiny: tuple[Any, Any, Engine]) -> None:
    """Greedy with transformers' repetition penalty (what ``Engine.chat`` uses) picks the tokens
    ``generate(repetition_penalty=1.3)`` picks, and differs from unpenalised greedy."""
    _, hf, engine = tiny
    prompt = _prompt(engine)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, min_new_tokens=16, do_sample=False,
            repetition_penalty=1.3, pad_token_id=0, eos_token_id=None,
        )
    reference = [int(t) for t in out[0, len(prompt):]]
    penalised = engine.generate(prompt, SamplingParams(max_tokens=16, repetition_penalty=1.3)).token_ids
    assert penalised == reference[: len(penalised)]
    assert penalised != engine.generate(prompt, SamplingParams(max_tokens=16)).token_ids


def test_frequency_and_presence_penalties_count_only_the_answer() -> None:
    params = SamplingParams(frequency_penalty=0.5, presence_penalty=0.25)
    penalties = Penalties.of(params, [1, 2, 3], vocab_size=6)
    assert penalties is not None and Penalties.of(SamplingParams(), [1], 6) is None
    penalties.add([4, 4, 5])
    logits = torch.zeros(6)
    expected = torch.tensor([0.0, 0.0, 0.0, 0.0, -1.25, -0.75])  # 4 twice: 2 * 0.5 + 0.25; 5 once
    torch.testing.assert_close(penalties.apply(logits), expected)
    assert torch.equal(logits, torch.zeros(6))  # the caller's logits are left alone
