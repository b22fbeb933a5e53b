"""Asks through the REST API as background runs: 32 at once against the same 32 one at a time.

An embedded Corral (the real default chat model on the embedded engine, runs on ``CORRAL_RUN_THREADS``
threads of the server sharing the one loaded model) serves over HTTP on loopback. Each ask is
``POST /v1/corpora/{name}/runs`` (strategy ``retrieve``, short answers) followed over its Server-Sent
Events stream to the ``final`` event. Printed: throughput (runs/s) of the concurrent batch against the
sequential one and their ratio; p50/p95 time from the POST to the first event, to the first answer
token and to the final event; how many runs did not succeed.

Both phases run after an untimed warm-up pass over the same questions, so the model is loaded and the
prefix cache holds the same prompts for both.

Usage::

    .venv/bin/python bench/api.py                     # 32 runs, 16 new tokens each
    .venv/bin/python bench/api.py --runs 8 --max-new-tokens 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

TOPICS = [
    ("deploys", "Deploys are frozen on Fridays after noon and during the last week of each quarter."),
    ("on-call", "The on-call engineer rotates every Monday at 10:00 and hands over in the ops channel."),
    ("refunds", "Refunds are paid within five working days of the request being approved."),
    ("backups", "Database backups run nightly at 02:00 UTC and are kept for thirty-five days."),
    ("passwords", "Passwords are rotated every ninety days; service accounts use keys instead."),
    ("incidents", "Every incident gets a written review within two weeks, without blame."),
    ("releases", "Releases are tagged from main after the full test suite passes twice."),
    ("holidays", "Staff take holidays in agreement with their team; two weeks' notice is asked."),
]


@dataclass(slots=True)
class Timing:
    first_event_s: float
    first_token_s: float | None
    final_s: float
    state: str


def _corpus(root: Path) -> Path:
    docs = root / "handbook"
    docs.mkdir(parents=True)
    for name, fact in TOPICS:
        (docs / f"{name}.md").write_text(f"# {name.title()}\n\n{fact}\n\nAsk the team lead for details.\n")
    return docs


def _questions(n: int) -> list[str]:
    asks = ["When", "How often", "What is the rule for", "Who handles"]
    return [f"{asks[i % len(asks)]} {TOPICS[i % len(TOPICS)][0]}? (question {i})" for i in range(n)]


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in event:
                yield event.get("event", "message"), json.loads(event["data"])
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            event[key] = value[1:] if value.startswith(" ") else value


def ask_one(base: str, question: str) -> Timing:
    import httpx

    with httpx.Client(base_url=base, timeout=600) as client:
        started = time.perf_counter()
        accepted = client.post("/v1/corpora/handbook/runs",
                               json={"question": question, "strategy": "retrieve"})
        accepted.raise_for_status()
        first_event = first_token = None
        state = "lost"
        with client.stream("GET", accepted.json()["events_url"]) as response:
            for kind, data in _sse(response.iter_lines()):
                now = time.perf_counter() - started
                first_event = first_event if first_event is not None else now
                if kind == "token" and first_token is None:
                    first_token = now
                if kind == "final":
                    state = data["state"]
                    break
        return Timing(first_event or 0.0, first_token, time.perf_counter() - started, state)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _phase(name: str, base: str, questions: list[str], concurrency: int) -> dict[str, Any]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        timings = list(pool.map(lambda q: ask_one(base, q), questions))
    wall = time.perf_counter() - started
    tokens = [t.first_token_s for t in timings if t.first_token_s is not None]
    row = {
        "phase": name, "runs": len(timings), "wall_s": round(wall, 2),
        "runs_per_s": round(len(timings) / wall, 3),
        "first_event_p50_s": round(statistics.median(t.first_event_s for t in timings), 3),
        "first_event_p95_s": round(_pct([t.first_event_s for t in timings], 0.95), 3),
        "first_token_p50_s": round(statistics.median(tokens), 3) if tokens else None,
        "first_token_p95_s": round(_pct(tokens, 0.95), 3) if tokens else None,
        "answer_p50_s": round(statistics.median(t.final_s for t in timings), 3),
        "answer_p95_s": round(_pct([t.final_s for t in timings], 0.95), 3),
        "errors": sum(t.state != "succeeded" for t in timings),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="corral-bench-api-"))
    for key in [k for k in os.environ if k.startswith("CORRAL_")]:
        del os.environ[key]
    os.environ.update({
        "CORRAL_DATA_DIR": str(root / "data"), "CORRAL_CHAT_MAX_NEW_TOKENS": str(args.max_new_tokens),
        "CORRAL_RUN_THREADS": str(args.runs), "CORRAL_INGEST_ALLOWED_ROOTS": json.dumps([str(root)]),
    })
    import httpx
    import torch
    import uvicorn

    from corral.core.config import get_settings
    from corral.inference.engine import cpu_features, resolve_format
    from corral.platform.api.app import create_app

    keep = ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "avx_ne_convert")
    flags = " ".join(f for f in keep if f in cpu_features().flags) or "none"
    settings = get_settings()
    folder, gguf = settings.resolved_chat_model()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    print(f"# CPU: {cpu_features().describe()} (flags: {flags}); engine weights "
          f"{resolve_format(settings.engine_weights)}")
    print(f"# model {gguf or folder.name}; {args.runs} runs, retrieve, {args.max_new_tokens} new tokens, "
          f"{settings.run_threads} run threads", flush=True)

    server = uvicorn.Server(uvicorn.Config(create_app(bind_host="127.0.0.1"), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"

    with httpx.Client(base_url=base, timeout=600) as client:
        job = client.post("/v1/corpora/handbook/ingest", json={"path": str(_corpus(root))}).json()
        while client.get(f"/v1/jobs/{job['job_id']}").json()["state"] in ("queued", "running"):
            time.sleep(0.2)
    questions = _questions(args.runs)
    loaded = time.perf_counter()
    ask_one(base, questions[0])  # loads the model
    print(f"# first run (loads the model): {time.perf_counter() - loaded:.1f} s", flush=True)
    if not args.no_warmup:
        _phase("warm-up (concurrent, untimed)", base, questions, args.runs)
    one = _phase("one at a time", base, questions, 1)
    many = _phase(f"{args.runs} at once", base, questions, args.runs)
    print(f"# throughput ratio ({args.runs} at once / one at a time): "
          f"{many['runs_per_s'] / one['runs_per_s']:.2f}x; errors {one['errors'] + many['errors']}")
    server.should_exit = True
    thread.join(timeout=30)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
