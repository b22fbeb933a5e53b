"""Routing benchmark: evidence recall against tokens read, per strategy and for the router.

Builds a large needle + aggregation corpus (the Python reference topics as filler) and a code corpus
(standard-library packages, docstrings stripped), indexes both with the real pipeline and embedder,
and evaluates every reading strategy and the router at several backend windows. The baseline is
always-stuff in the same run; the ratios printed are router/stuff tokens and router - stuff recall.

Evidence recall needs no chat model (it checks whether the gold evidence is in what the model would
read), so the default run loads none; ``--with-model`` adds the Self-Route escalations, which need
the model's "the context cannot answer" verdicts (slow on CPU: use small task counts).

    .venv/bin/python bench/routing.py --documents 400 --needles 60 --code-tasks 40 \
        --window 8192 --window 131072 --window 1048576
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=400)
    ap.add_argument("--paragraphs", type=int, default=8)
    ap.add_argument("--needles", type=int, default=60)
    ap.add_argument("--aggregate-records", type=int, default=24)
    ap.add_argument("--code-tasks", type=int, default=40)
    ap.add_argument("--code-packages", default="json,http,email,logging")
    ap.add_argument("--window", type=int, action="append")
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--with-model", action="store_true")
    ap.add_argument("--data-dir", type=Path, help="CORRAL_DATA_DIR for the run (default: a temp folder)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="corral-routing-")
    os.environ["CORRAL_DATA_DIR"] = str(args.data_dir or Path(tmp) / "data")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from corral.agents.routing import Strategy
    from corral.platform.cli.commands.eval_cmd import EvalSize, run_eval

    size = EvalSize(documents=args.documents, paragraphs_per_doc=args.paragraphs, needles=args.needles,
                    aggregate_records=args.aggregate_records, code_tasks=args.code_tasks,
                    code_packages=tuple(args.code_packages.split(",")))
    windows = args.window or [8192, 131_072, 1_048_576]
    started = time.perf_counter()
    reports = run_eval(Path(tmp) / "work", size, windows, with_model=args.with_model, top_k=args.top_k)
    for suite, by_window in reports.items():
        for w, r in by_window.items():
            fits = "within" if r.corpus_tokens <= w else "past"
            print(f"\n### {suite}: corpus {r.corpus_tokens:,} tokens, window {w:,} ({fits} the window, "
                  f"{'hybrid' if r.hybrid else 'dense-only'} retrieval)\n")
            print(r.markdown())
            rows = {(x["kind"], x["strategy"]): x for x in r.summary()}
            for kind in sorted({k for k, _ in rows}):
                router, stuff = rows.get((kind, "router")), rows.get((kind, Strategy.STUFF.value))
                if router and stuff and stuff["tokens"]:
                    ratio = int(router["tokens"]) / int(stuff["tokens"])  # type: ignore[call-overload]
                    gain = float(router["recall"]) - float(stuff["recall"])  # type: ignore[arg-type]
                    print(f"\n{kind}: router/stuff tokens = {ratio:.3f}, router - stuff recall = {gain:+.3f}")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
