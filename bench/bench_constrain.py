"""Constrained-decoding libraries compared on SmolLM2's 49k-token vocabulary.

For each library: the one-off tokenizer preparation, the per-request grammar compile (a two-tool
tool-call schema), and the per-token cost of computing the allowed-token mask while walking a valid
tool call token by token (mask + advance, the work the decode loop adds per token).

Usage (libraries that are not installed are skipped; install candidates into a scratch folder)::

    pip install --target /tmp/cand --no-deps llguidance==1.9.1 xgrammar==0.2.8 \
        outlines-core==0.2.14 apache-tvm-ffi
    PYTHONPATH=/tmp/cand .venv/bin/python bench/bench_constrain.py [TOKENIZER_DIR]

Without TOKENIZER_DIR the tokenizer is read from the default chat model (the SmolLM2 GGUF).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

TOOLS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "properties": {
                "name": {"const": "get_weather"},
                "arguments": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "unit": {"enum": ["celsius", "fahrenheit"]},
                        "days": {"type": "integer", "minimum": 1, "maximum": 14},
                    },
                    "required": ["city", "unit"],
                    "additionalProperties": False,
                },
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "name": {"const": "search_docs"},
                "arguments": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "top_k": {"type": "integer"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["query"],
                    "additionalProperties": False,
                },
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        },
    ]
}
SAMPLE = (
    '{"name": "search_docs", "arguments": {"query": "where are retries configured in the celery '
    'worker and what is the backoff", "top_k": 8, "tags": ["celery", "config", "retries"]}}'
)


def load_tokenizer(argv: list[str]) -> Any:
    from transformers import AutoTokenizer

    if len(argv) > 1:
        return AutoTokenizer.from_pretrained(argv[1])
    from corral.core.config import get_settings
    from corral.ingestion.tokens import load_tokenizer as load

    settings = get_settings()
    folder, gguf = settings.resolved_chat_model()
    return load(folder, gguf, settings.cache_dir)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def bench_llguidance(tok: Any, ids: list[int]) -> dict[str, float]:
    import llguidance
    import llguidance.hf
    import torch

    lt, prep = timed(lambda: llguidance.hf.from_tokenizer(tok))
    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        TOOLS_SCHEMA,
        overrides={"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "},
    )
    compiles = []
    for _ in range(5):
        matcher, sec = timed(lambda: llguidance.LLMatcher(lt, grammar))
        compiles.append(sec)
    mask = torch.zeros((len(tok) + 31) // 32, dtype=torch.int32)
    steps = []
    for i in ids:
        started = time.perf_counter()
        matcher.unsafe_compute_mask_ptr(mask.data_ptr(), mask.numel() * 4)
        allowed = bool((int(mask[i // 32]) >> (i % 32)) & 1)
        matcher.consume_token(i)
        steps.append(time.perf_counter() - started)
        if not allowed or matcher.is_error():
            raise RuntimeError(f"llguidance rejected {i}: {matcher.get_error()}")
    return {"prepare_s": prep, "compile_ms": 1e3 * statistics.median(compiles), **_steps(steps)}


def bench_xgrammar(tok: Any, ids: list[int]) -> dict[str, float]:
    import xgrammar as xgr

    info, prep = timed(lambda: xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok)))
    compiles = []
    for _ in range(5):
        compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        compiled, sec = timed(
            lambda c=compiler: c.compile_json_schema(TOOLS_SCHEMA, any_whitespace=False)  # type: ignore[misc]
        )
        compiles.append(sec)
    matcher = xgr.GrammarMatcher(compiled)
    mask = xgr.allocate_token_bitmask(1, info.vocab_size)
    steps = []
    for i in ids:
        started = time.perf_counter()
        matcher.fill_next_token_bitmask(mask)
        allowed = bool((int(mask[0, i // 32]) >> (i % 32)) & 1)
        ok = matcher.accept_token(i)
        steps.append(time.perf_counter() - started)
        if not (allowed and ok):
            raise RuntimeError(f"xgrammar rejected {i}")
    return {"prepare_s": prep, "compile_ms": 1e3 * statistics.median(compiles), **_steps(steps)}


def bench_outlines_core(tok: Any, ids: list[int]) -> dict[str, float]:
    import outlines_core as oc
    import torch

    def vocabulary() -> Any:
        # outlines-core wants each token's text; byte-level BPE pieces decode one by one.
        table: dict[str, list[int]] = {}
        special = set(tok.all_special_ids)
        for token_id in range(len(tok)):
            if token_id in special:
                continue
            table.setdefault(tok.convert_tokens_to_string([tok.convert_ids_to_tokens(token_id)]), []).append(
                token_id
            )
        return oc.Vocabulary(tok.eos_token_id, table)

    vocab, prep = timed(vocabulary)
    regex = oc.json_schema.build_regex_from_schema(json.dumps(TOOLS_SCHEMA))
    index, compile_s = timed(lambda: oc.Index(regex, vocab))  # one compile: it takes seconds
    guide = oc.Guide(index)
    mask = torch.zeros((len(tok) + 31) // 32, dtype=torch.int32)
    steps = []
    for i in ids:
        started = time.perf_counter()
        guide.write_mask_into(mask.data_ptr(), mask.numel(), 4)
        allowed = bool((int(mask[i // 32]) >> (i % 32)) & 1)
        guide.advance(i)
        steps.append(time.perf_counter() - started)
        if not allowed:
            raise RuntimeError(f"outlines-core rejected {i}")
    return {"prepare_s": prep, "compile_ms": 1e3 * compile_s, **_steps(steps)}


def bench_corral(tok: Any, ids: list[int]) -> dict[str, float]:
    """What our decode loops pay: ``GrammarConstraint`` (llguidance) with the bool-mask expansion."""
    from corral.inference.constrain import ConstraintCompiler

    compiler, prep = timed(lambda: ConstraintCompiler(tok))
    _, prep2 = timed(compiler.prepare)
    compiles = []
    for _ in range(5):
        constraint, sec = timed(lambda: compiler.json_schema(TOOLS_SCHEMA))
        compiles.append(sec)
    steps = []
    for i in ids:
        started = time.perf_counter()
        allowed = bool(constraint.allowed_mask(len(tok))[i])
        constraint.advance([i])
        steps.append(time.perf_counter() - started)
        if not allowed:
            raise RuntimeError(f"GrammarConstraint rejected {i}")
    return {"prepare_s": prep + prep2, "compile_ms": 1e3 * statistics.median(compiles), **_steps(steps)}


def _steps(steps: list[float]) -> dict[str, float]:
    ordered = sorted(steps)
    return {
        "first_mask_us": 1e6 * steps[0],
        "mask_us_median": 1e6 * statistics.median(ordered),
        "mask_us_p95": 1e6 * ordered[int(0.95 * (len(ordered) - 1))],
        "mask_us_max": 1e6 * ordered[-1],
    }


def main() -> None:
    tok = load_tokenizer(sys.argv)
    ids = tok(SAMPLE, add_special_tokens=False)["input_ids"]
    print(f"vocabulary {len(tok)}, sample tool call of {len(ids)} tokens")
    results: dict[str, dict[str, float]] = {}
    for name, fn in (
        ("llguidance", bench_llguidance),
        ("xgrammar", bench_xgrammar),
        ("outlines-core", bench_outlines_core),
        ("corral GrammarConstraint (llguidance + bool mask)", bench_corral),
    ):
        try:
            results[name] = fn(tok, ids)
        except ImportError as exc:
            print(f"{name}: not installed ({exc})")
        except Exception as exc:
            print(f"{name}: failed: {exc.__class__.__name__}: {exc}")
    if not results:
        return
    base = results.get("llguidance")
    print("| library | tokenizer prep (s) | compile (ms) | first mask (µs) | mask+advance median (µs) "
          "| p95 (µs) | max (µs) |" + (" median vs llguidance |" if base else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if base else ""))
    for name, r in results.items():
        ratio = f" {r['mask_us_median'] / base['mask_us_median']:.2f}x |" if base else ""
        print(f"| {name} | {r['prepare_s']:.2f} | {r['compile_ms']:.1f} | {r['first_mask_us']:.0f} | "
              f"{r['mask_us_median']:.0f} | {r['mask_us_p95']:.0f} | {r['mask_us_max']:.0f} |{ratio}")


if __name__ == "__main__":
    main()
