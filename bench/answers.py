"""Answer benchmark: accuracy, citation precision and recall, and seconds, per chat-model preset and per
strategy, on the demo's corpora (the standard library's json and http packages and the README) with
the real models.

Each preset runs in a process of its own, with its own data dir (token counts come from the model's
own tokenizer, so each indexes the corpora itself). The tasks and the scoring are
``corral.agents.eval.answers`` (the same as ``corral eval --answers``). ``--reading-budget`` sweeps
the tokens an answer may read (``CORRAL_CHAT_READING_BUDGET``): the accuracy-vs-context curve the
presets' reading budgets come from.

    .venv/bin/python bench/answers.py                       # both presets, routed, default budgets
    .venv/bin/python bench/answers.py --preset qwen2.5-coder-0.5b --strategy retrieve \\
        --reading-budget 1024 --reading-budget 2048 --reading-budget 4096 --reading-budget 7000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PRESETS = ("smollm2-135m", "qwen2.5-coder-0.5b")


def _worker(preset: str, strategies: list[str], budget: int | None, data: Path, limit: int | None) -> None:
    os.environ["CORRAL_DATA_DIR"] = str(data)
    os.environ["CORRAL_CHAT_MODEL"] = preset
    if budget:
        os.environ["CORRAL_CHAT_READING_BUDGET"] = str(budget)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from corral.platform.cli.commands.eval_cmd import answer_scores, index_demo_corpora
    from corral.platform.composition import get_chat_model, prepare

    prepare()
    started = time.perf_counter()
    index_demo_corpora()
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    get_chat_model()
    load_s = time.perf_counter() - started

    def show(s: Any) -> None:
        print(f"  [{preset} {s.strategy} {budget or '-'}] {'OK ' if s.correct else 'BAD'} "
              f"{s.seconds:5.1f}s {s.prompt_tokens:5d}t {s.support:>16} {s.task.question[:60]!r} -> "
              f"{s.answer[:160]!r}", file=sys.stderr, flush=True)

    scores = answer_scores(strategies, limit=limit, on_answer=show)
    print(json.dumps([
        {"preset": preset, "strategy": s.strategy, "budget": budget, "kind": s.task.kind,
         "question": s.task.question, "correct": s.correct, "support": s.support, "cited": s.cited,
         "unsupported": s.unsupported, "gold_cited": s.gold_cited, "prompt_tokens": s.prompt_tokens,
         "seconds": s.seconds, "first_token_s": s.first_token_s, "used": s.strategy, "answer": s.answer,
         "ingest_s": ingest_s, "load_s": load_s}
        for s in scores]))


def _row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from corral.agents.eval.answers import DEMO_TASKS, AnswerScore, summarise

    by_q = {t.question: t for t in DEMO_TASKS}
    scores = [AnswerScore(by_q[r["question"]], r["correct"], r["support"], r["cited"], r["unsupported"],
                          r["gold_cited"], r["prompt_tokens"], r["seconds"], r["first_token_s"], r["used"])
              for r in rows]
    return summarise(scores)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.0f}%"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", choices=PRESETS)
    ap.add_argument("--strategy", action="append",
                    choices=["routed", "stuff", "retrieve", "scoped-stuff", "map-reduce"])
    ap.add_argument("--reading-budget", type=int, action="append")
    ap.add_argument("--tasks", type=int, help="only the first N tasks")
    ap.add_argument("--data-dir", type=Path, help="keep indexes here (reused across runs)")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    strategies = args.strategy or ["routed"]
    budgets = args.reading_budget or [0]
    if args.worker:
        _worker(args.worker, strategies, budgets[0] or None, args.data_dir, args.tasks)
        return
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="corral-answers-"))
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for preset in args.preset or PRESETS:
        for budget in budgets:
            cmd = [sys.executable, __file__, "--worker", preset, "--data-dir", str(root / preset),
                   *[a for s in strategies for a in ("--strategy", s)], "--reading-budget", str(budget)]
            if args.tasks:
                cmd += ["--tasks", str(args.tasks)]
            got = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
            rows += json.loads(got.stdout.strip().splitlines()[-1])
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1))
    from corral.inference.engine.cpu import cpu_features

    print(f"\nCPU: {cpu_features().describe()}; threads: {os.cpu_count()}; "
          f"{len(rows)} answers in {time.perf_counter() - started:.0f}s\n")
    print("| preset | strategy | reading budget | answers | accuracy | citation precision | answers citing "
          "| citation recall | p50 prompt tokens | p50 first token s | p50 s | p90 s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["preset"], r["strategy"], r["budget"] or 0) for r in rows},
                  key=lambda k: (PRESETS.index(k[0]), k[1], k[2]))
    for key in keys:
        preset, strategy, budget = key
        s = _row([r for r in rows if (r["preset"], r["strategy"], r["budget"] or 0) == key])
        print(f"| {preset} | {strategy} | {budget or 'default'} | {s['answers']} "
              f"| {_fmt(s['accuracy'], True)} | {_fmt(s['citation_precision'], True)} "
              f"| {_fmt(s['answers_citing'], True)} | {_fmt(s['citation_recall'], True)} "
              f"| {s['p50_prompt_tokens']} | {_fmt(s['p50_first_token_s'])} "
              f"| {_fmt(s['p50_seconds'])} | {_fmt(s['p90_seconds'])} |")
    kinds = sorted({r["kind"] for r in rows})
    print("\nAccuracy by task kind:\n")
    print("| preset | strategy | reading budget | " + " | ".join(kinds) + " |")
    print("|---|---|---|" + "---|" * len(kinds))
    for preset, strategy, budget in keys:
        cells = []
        for k in kinds:
            sel = [r for r in rows if (r["preset"], r["strategy"], r["budget"] or 0, r["kind"])
                   == (preset, strategy, budget, k)]
            cells.append(f"{sum(r['correct'] for r in sel)}/{len(sel)}")
        print(f"| {preset} | {strategy} | {budget or 'default'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
