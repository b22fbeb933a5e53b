"""What constrained decoding costs and saves in a real decode loop (SmolLM2-135M GGUF by default).

One required tool call over the same prompt, three ways:

* ``forced+mask``: the shipped path: grammar-forced tokens go in as one mini-prefill, the rest are
  sampled under the mask;
* ``mask only``: the same grammar with forcing switched off (every token sampled under the mask);
* ``free``: no grammar at all, the same number of new tokens (the unconstrained baseline).

Usage::

    .venv/bin/python bench/bench_tool_calls.py [--backend hf|engine] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from corral.inference.chat import ToolChoice, build_prompt, parse_tools
from corral.inference.chat.tools import parse_tool_calls
from corral.inference.constrain import ConstraintCompiler, GrammarConstraint
from corral.inference.generation import SamplingParams

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        }, "required": ["city", "unit"]},
    }},
    {"type": "function", "function": {
        "name": "search_docs", "description": "Search the documentation.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "maxLength": 80},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 20},
        }, "required": ["query", "top_k"]},
    }},
]
MESSAGES = [{"role": "user", "content": "What is the weather in Paris right now, in celsius?"}]


class Counting:
    """The grammar as shipped, counting forced tokens and the mini-prefills that carried them."""

    def __init__(self, inner: GrammarConstraint) -> None:
        self._inner = inner
        self.forced_tokens = 0
        self.prefills = 0

    def allowed_mask(self, vocab_size: int) -> Any:
        return self._inner.allowed_mask(vocab_size)

    def forced(self) -> list[int]:
        ids = self._inner.forced()
        self.forced_tokens += len(ids)
        self.prefills += bool(ids)
        return ids

    def advance(self, token_ids: Sequence[int]) -> None:
        self._inner.advance(token_ids)

    def is_finished(self) -> bool:
        return self._inner.is_finished()


class NoForcing:
    """The same grammar, but never reports forced tokens: every token is sampled under the mask."""

    def __init__(self, inner: GrammarConstraint) -> None:
        self._inner = inner

    def allowed_mask(self, vocab_size: int) -> Any:
        return self._inner.allowed_mask(vocab_size)

    def forced(self) -> list[int]:
        return []

    def advance(self, token_ids: Sequence[int]) -> None:
        self._inner.advance(token_ids)

    def is_finished(self) -> bool:
        return self._inner.is_finished()


def load(backend: str) -> Any:
    from corral.core.config import get_settings

    folder, gguf = get_settings().resolved_chat_model()
    if backend == "engine":
        from corral.inference.engine import load_engine

        return load_engine(folder, gguf)
    from corral.inference.hf import HFChatModel

    return HFChatModel(folder, gguf)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["hf", "engine"], default="hf")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    engine = load(args.backend)
    print(f"backend {args.backend}: {engine.model_id} loaded in {time.perf_counter() - started:.1f} s")
    compiler = ConstraintCompiler(engine.tokenizer, eos_token_ids=engine.eos_token_ids)
    compiler.prepare()
    specs = parse_tools(TOOLS)
    assert ToolChoice("required").mode == "required"
    prompt = build_prompt(engine.tokenizer, MESSAGES, specs)
    greedy = SamplingParams(max_tokens=120, temperature=0.0)
    engine.generate(prompt, SamplingParams(max_tokens=4))  # warm-up

    def grammar() -> GrammarConstraint:
        return compiler.tools([(s.name, s.parameters) for s in specs], required=True)

    rows: dict[str, list[tuple[float, int]]] = {"forced+mask": [], "mask only": [], "free": []}
    text = ""
    counted = Counting(grammar())
    for _ in range(args.runs):
        for name, make in (("forced+mask", grammar), ("mask only", lambda: NoForcing(grammar()))):
            constraint: Any = make()
            if name == "forced+mask":
                constraint = counted = Counting(constraint)
            t0 = time.perf_counter()
            result = engine.generate(prompt, greedy, constraint)
            rows[name].append((time.perf_counter() - t0, len(result.token_ids)))
            text = result.text
        n = rows["forced+mask"][-1][1]
        t0 = time.perf_counter()
        free = engine.generate(prompt, SamplingParams(max_tokens=n, temperature=0.0))
        rows["free"].append((time.perf_counter() - t0, len(free.token_ids)))
    calls = parse_tool_calls(text)
    print(f"prompt {len(prompt)} tokens; output: {text!r}")
    print(f"parsed: {[(c.name, c.arguments) for c in calls] if calls else None}")
    print(f"forced+mask: {counted.forced_tokens} tokens forced in {counted.prefills} mini-prefills, "
          f"{rows['forced+mask'][-1][1] - counted.forced_tokens} sampled")
    base = statistics.median(s for s, _ in rows["free"])
    print("| decode | new tokens | median wall (s) | vs free |")
    print("|---|---|---|---|")
    for name, samples in rows.items():
        wall = statistics.median(s for s, _ in samples)
        print(f"| {name} | {samples[-1][1]} | {wall:.3f} | {wall / base:.2f}x |")


if __name__ == "__main__":
    main()
