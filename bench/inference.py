"""The embedded engine against transformers ``generate()`` (bf16), same process, interleaved, ratios printed.

Figures, per model (SmolLM2-135M GGUF; random ~250M Llama-4-text and Qwen3-MoE configs):
- prefill tok/s and decode tok/s after a context of N tokens (N = 2k, 8k), ours vs transformers;
- llama.cpp (llama-cpp-python, the `llamacpp` extra) on the same GGUF when it is installed (skipped if not);
- time to first token for a question after an 8k-token prefix: cold (empty cache) vs warm (the prefix
  cache read from disk by a *new process*);
- measured read bandwidth and the decode roofline (bandwidth / weight bytes one decode step reads);
- concurrent requests (``--only batch``): generated tokens/s with decode steps batched into one forward
  pass vs the same engine stepping one request at a time.

Usage::

    .venv/bin/python bench/inference.py                 # everything (~10 min on 2 busy cores)
    .venv/bin/python bench/inference.py --quick         # 2k only, fewer steps, no MoE 8k
    .venv/bin/python bench/inference.py --only smollm2 --contexts 2048 --decode-steps 16
    .venv/bin/python bench/inference.py --threads 1     # on cores other processes are also using

Each (engine, context) figure is the best of ``--repeats`` interleaved runs (ours, theirs, ours,
theirs, ...) so that load from other processes on the machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from corral.inference.engine import (
    WEIGHT_FORMATS,
    Engine,
    EngineOptions,
    choose_format,
    cpu_features,
    describe,
    engine_from_hf,
)
from corral.inference.engine.loading import load_hf_model
from corral.inference.generation import SamplingParams


class _NoText:
    """A tokenizer stand-in for random models: the engine decodes text each step, here there is none."""

    eos_token_id = None
    chat_template = None

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return ""


_REF_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def _options(args: argparse.Namespace, **kw: Any) -> EngineOptions:
    return EngineOptions(weights=args.weights, memory_cache_bytes=0, **kw)


def _isa_flags() -> str:
    """The vector-ISA flags of /proc/cpuinfo that decide the engine's paths (what RESULTS.md records)."""
    keep = ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "avx_ne_convert")
    return " ".join(f for f in keep if f in cpu_features().flags) or "none"


def read_bandwidth_gbs(mib: int = 512) -> float:
    """Best of 5 full reads of a ``mib`` MiB tensor (sum), in GB/s, with torch's threads."""
    x = torch.ones(mib * (1 << 20) // 4, dtype=torch.float32)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _with_bytes(rows: list[dict[str, Any]], facts: dict[str, Any]) -> list[dict[str, Any]]:
    """What one decode step reads at each row's context: the weights, and the KV cache so far."""
    for row in rows:
        row["active_bytes"] = facts["active_bytes_per_token"]
        row["kv_bytes"] = facts["kv_bytes_per_position"] * row["context"]
    return rows


def ours_once(engine: Engine, prompt: list[int], steps: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) through ``Engine.generate`` with no prefix cache hit."""
    r = engine.generate(prompt, SamplingParams(max_tokens=steps + 1))
    decoded = len(r.token_ids) - 1  # the first token comes out of the prefill
    return len(prompt) / r.prefill_s, decoded / r.decode_s


def hf_once(model: Any, prompt: list[int], steps: int) -> tuple[float, float]:
    """One ``generate()`` call; a streamer timestamps every token, so prefill and decode come from the
    same run (no subtraction of two noisy runs)."""
    from transformers.generation.streamers import BaseStreamer

    stamps: list[float] = []

    class Clock(BaseStreamer):  # type: ignore[misc]
        def put(self, value: Any) -> None:
            stamps.append(time.perf_counter())

        def end(self) -> None:
            pass

    ids = torch.tensor([prompt])
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=steps + 1,
            min_new_tokens=steps + 1,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
            streamer=Clock(),
        )
    # stamps[0]: the prompt handed over; stamps[1]: the first new token (end of prefill); then one per step
    first, last = stamps[1], stamps[-1]
    return len(prompt) / (first - started), (len(stamps) - 2) / (last - first)


def llama_cpp_once(llm: Any, prompt: list[int], steps: int) -> tuple[float, float]:
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt)
    prefill = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        token = llm.sample(temp=0.0)
        llm.eval([token])
    return len(prompt) / prefill, steps / (time.perf_counter() - t)


def compare(
    name: str,
    runners: dict[str, Callable[[list[int], int], tuple[float, float]]],
    vocab: int,
    contexts: list[int],
    steps: int,
    repeats: int,
) -> list[dict[str, Any]]:
    rows = []
    for n in contexts:
        torch.manual_seed(n)
        prompt = [int(t) for t in torch.randint(100, vocab - 100, (n,))]
        best: dict[str, tuple[float, float]] = {}
        for _ in range(repeats):
            for label, run in runners.items():
                pf, dc = run(prompt, steps)
                old = best.get(label, (0.0, 0.0))
                best[label] = (max(old[0], pf), max(old[1], dc))
        row: dict[str, Any] = {"model": name, "context": n}
        for label, (pf, dc) in best.items():
            row[f"{label}_prefill"] = round(pf, 1)
            row[f"{label}_decode"] = round(dc, 2)
        for label in runners:
            if label != "ours":
                row[f"prefill_x_{label}"] = round(best["ours"][0] / best[label][0], 2)
                row[f"decode_x_{label}"] = round(best["ours"][1] / best[label][1], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def random_moe(kind: str) -> tuple[Any, Any]:
    """A random ~250M-parameter model (fp32 transformers) of ``kind``: llama4_text or qwen3_moe."""
    import transformers as tf

    torch.manual_seed(0)
    common: dict[str, Any] = {
        "vocab_size": 32000,
        "hidden_size": 768,
        "num_attention_heads": 12,
        "num_key_value_heads": 4,
        "head_dim": 64,
        "max_position_embeddings": 16384,
        "tie_word_embeddings": False,
    }
    config: Any
    if kind == "llama4_text":  # the 16-expert, top-1, shared-expert layout of Llama 4 Scout
        config = tf.Llama4TextConfig(
            **common,
            num_hidden_layers=5,
            intermediate_size=1024,
            intermediate_size_mlp=2048,
            num_local_experts=16,
            num_experts_per_tok=1,
            interleave_moe_layer_step=1,
            attention_chunk_size=8192,
            use_qk_norm=True,
            attn_temperature_tuning=True,
        )
    else:
        config = tf.Qwen3MoeConfig(
            **common,
            num_hidden_layers=10,
            intermediate_size=2048,
            moe_intermediate_size=512,
            num_experts=16,
            num_experts_per_tok=2,
            norm_topk_prob=True,
        )
    model = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"# random {kind}: {params / 1e6:.0f}M parameters", flush=True)
    return config, model


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if args.only in (None, "smollm2"):
        folder, gguf = _default_model()
        tok, hf = load_hf_model(folder, gguf)
        engine = engine_from_hf(tok, hf, model_path=folder, gguf_file=gguf, options=_options(args))
        facts = describe(engine)
        engine = Engine(
            engine.model, tok, model_id="bench", context_window=engine.context_window, eos_token_ids=[-1]
        )
        ref = hf.to(_REF_DTYPES[args.reference_dtype])
        runners: dict[str, Callable[[list[int], int], tuple[float, float]]] = {
            "ours": lambda p, s, e=engine: ours_once(e, p, s),
            "transformers": lambda p, s, m=ref: hf_once(m, p, s),
        }
        llm = _llama_cpp(folder / gguf, max(args.contexts) + args.decode_steps + 8)
        if llm is not None:
            runners["llama_cpp"] = lambda p, s, m=llm: llama_cpp_once(m, p, s)
        else:
            print("# llama-cpp-python is not installed: llama.cpp comparison skipped", flush=True)
        print(f"# smollm2: {json.dumps(facts)}", flush=True)
        rows += _with_bytes(compare("smollm2-135m-gguf", runners, 49152, args.contexts, args.decode_steps,
                                    args.repeats), facts)
        del engine, ref, hf, runners
    for kind in ("llama4_text", "qwen3_moe"):
        if args.only not in (None, kind):
            continue
        _, model = random_moe(kind)
        engine = engine_from_hf(
            _NoText(),
            _with_eos(model),
            model_path=tempfile.gettempdir(),
            options=_options(args),
        )
        facts = describe(engine)
        engine = Engine(
            engine.model, _NoText(), model_id=kind, context_window=engine.context_window, eos_token_ids=[-1]
        )
        ref = model.to(_REF_DTYPES[args.reference_dtype])
        runners = {
            "ours": lambda p, s, e=engine: ours_once(e, p, s),
            "transformers": lambda p, s, m=ref: hf_once(m, p, s),
        }
        print(f"# {kind}: {json.dumps(facts)}", flush=True)
        rows += _with_bytes(compare(kind, runners, 32000, args.moe_contexts, args.decode_steps, args.repeats),
                            facts)
        del engine, ref, model, runners
    return rows


def _with_eos(model: Any) -> Any:
    model.generation_config.eos_token_id = 2
    return model


def _default_model() -> tuple[Path, str]:
    from corral.core.config import Settings  # the bench is a client: it may read the app's settings

    folder, gguf = Settings().resolved_chat_model()
    assert gguf is not None
    return Path(folder), gguf


def _llama_cpp(path: Path, n_ctx: int) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=torch.get_num_threads(), verbose=False)


_TTFT_CHILD = """
import json, sys, time
from pathlib import Path
import torch
from corral.inference.engine import EngineOptions, load_engine
from corral.inference.generation import SamplingParams
folder, gguf, cache, weights, ids = sys.argv[1:6]
torch.set_num_threads(int(sys.argv[6]))
engine = load_engine(folder, gguf, EngineOptions(weights=weights, cache_dir=Path(cache)))
prompt = json.loads(Path(ids).read_text())
t = time.perf_counter()
r = engine.generate(prompt, SamplingParams(max_tokens=1))
print(json.dumps({"ttft_s": time.perf_counter() - t, "cached": r.cached_tokens, "prompt": len(prompt)}))
"""


def ttft(args: argparse.Namespace) -> dict[str, Any]:
    """Cold: a fresh process, empty cache, the whole 8k prefix + question. Warm: another fresh process,
    the same cache folder, the same prefix + a different question. Model loading is not timed."""
    folder, gguf = _default_model()
    torch.manual_seed(8)
    prefix = [int(t) for t in torch.randint(100, 49000, (args.prefix_tokens,))]
    questions = [[int(t) for t in torch.randint(100, 49000, (24,))] for _ in range(2)]
    out: dict[str, Any] = {"prefix_tokens": args.prefix_tokens}
    threads = str(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as cache:
        for label, question in (("cold", questions[0]), ("warm", questions[1])):
            ids = Path(cache) / f"{label}.json"
            ids.write_text(json.dumps(prefix + question))
            done = subprocess.run(
                [sys.executable, "-c", _TTFT_CHILD, str(folder), gguf, cache, args.weights, str(ids),
                 threads],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            out[f"{label}_ttft_s"] = round(result["ttft_s"], 3)
            out[f"{label}_cached_tokens"] = result["cached"]
        files = list(Path(cache).rglob("*.safetensors"))
        out["disk_cache_mb"] = round(sum(f.stat().st_size for f in files) / 1e6, 1)
    out["warm_speedup"] = round(out["cold_ttft_s"] / out["warm_ttft_s"], 1)
    print(json.dumps(out), flush=True)
    return out


def batching(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Concurrent requests on one engine: generated tokens/s (wall) with their decode steps batched into one
    forward pass, against the same engine taking the steps one request at a time (``max_batch=1``),
    in the same run. Each request has its own 256-token prompt and decodes ``--decode-steps`` tokens."""
    from concurrent.futures import ThreadPoolExecutor

    folder, gguf = _default_model()
    tok, hf = load_hf_model(folder, gguf)
    base = engine_from_hf(tok, hf, model_path=folder, gguf_file=gguf, options=_options(args))
    del hf
    rows: list[dict[str, Any]] = []
    for n in args.concurrency:
        torch.manual_seed(n)
        prompts = [[int(t) for t in torch.randint(100, 49000, (256,))] for _ in range(n)]
        params = SamplingParams(max_tokens=args.decode_steps + 1)
        row: dict[str, Any] = {"model": "smollm2-135m-gguf", "requests": n, "decode_steps": args.decode_steps}
        for label, max_batch in (("one_at_a_time", 1), ("batched", 16)):
            engine = Engine(
                base.model,
                tok,
                model_id=label,
                context_window=base.context_window,
                eos_token_ids=[-1],
                max_batch=max_batch,
            )
            best = 0.0
            for _ in range(args.repeats):
                started = time.perf_counter()
                with ThreadPoolExecutor(n) as pool:
                    results = list(pool.map(lambda p, e=engine, sp=params: e.generate(p, sp), prompts))
                # Generated tokens over the wall time of the whole set: the prefills are the same work
                # in both modes, so the difference is how the decode steps were run.
                best = max(best, sum(len(r.token_ids) for r in results) / (time.perf_counter() - started))
            row[f"{label}_tok_s"] = round(best, 1)
            row[f"{label}_mean_batch"] = engine.stats()["batching"]["mean_batch"]
        row["batched_x"] = round(row["batched_tok_s"] / row["one_at_a_time_tok_s"], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contexts", type=int, nargs="+", default=[2048, 8000])
    parser.add_argument("--moe-contexts", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--decode-steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--prefix-tokens", type=int, default=8000)
    parser.add_argument("--weights", default="auto", choices=["auto", *WEIGHT_FORMATS],
                        help="the engine's weight format (auto: what this CPU runs best)")
    parser.add_argument("--reference-dtype", default="bfloat16", choices=sorted(_REF_DTYPES),
                        help="transformers' dtype (the baseline)")
    parser.add_argument(
        "--only", choices=["smollm2", "llama4_text", "qwen3_moe", "ttft", "batch"], default=None
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="concurrent requests for the batching figures",
    )
    parser.add_argument("--quick", action="store_true", help="2k contexts, 12 decode steps, 1 repeat")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both sides (1 keeps figures stable when other processes share the cores)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.contexts, args.moe_contexts, args.decode_steps, args.repeats = [2048], [2048], 12, 1
    started = time.perf_counter()
    bw = read_bandwidth_gbs()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    print(f"# CPU: {cpu_features().describe()} (flags: {_isa_flags()}); engine weights "
          f"{choose_format(args.weights)}, transformers {args.reference_dtype}", flush=True)
    print(f"# read bandwidth {bw:.1f} GB/s", flush=True)
    rows = throughput(args) if args.only not in ("ttft", "batch") else []
    for row in rows:
        if "active_bytes" in row:
            read = row["active_bytes"] + row["kv_bytes"]
            row["roofline_decode"] = round(bw * 1e9 / read, 1)
            row["decode_of_roofline"] = round(row["ours_decode"] / row["roofline_decode"], 2)
            print(
                f"# {row['model']} at {row['context']}: decode roofline {row['roofline_decode']} tok/s "
                f"({row['active_bytes'] / 1e6:.0f} MB of weights + {row['kv_bytes'] / 1e6:.0f} MB of KV "
                f"cache read per token at {bw:.1f} GB/s); ours {row['decode_of_roofline']:.0%} of it",
                flush=True,
            )
    result: dict[str, Any] = {"bandwidth_gbs": round(bw, 1), "throughput": rows}
    if args.only in (None, "batch"):
        result["batching"] = batching(args)
    if args.only in (None, "ttft"):
        result["ttft"] = ttft(args)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"# total {result['wall_s']} s, load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
