"""Load bench: a mixed workload against a server-mode stack on this machine, bounded, loopback only.

It starts everything itself and stops everything at the end (or on Ctrl-C): a fresh PostgreSQL
database on the server you name (dropped afterwards), a Chroma server, a stand-in OpenAI-compatible
model (``tests/platform/slow_openai.py``: runs measure the platform, not generation), and the stack
with ``corral stack up --no-inference`` (API, ingest worker, agent worker). Then ``--clients``
threads for ``--duration`` seconds, each looping over a weighted mix:

- upload a small Markdown file to its own corpus and follow its ingest job to the end;
- ask a question as a run and follow it to the end (``GET /v1/runs/{id}``);
- load dashboard pages (signed in: the corpora list, a corpus, the jobs list);
- list corpora, jobs and runs through the REST API.

Reported (stdout, and ``--out`` as JSON): requests and throughput; p50/p95/p99 per endpoint (route
templates, not ids); errors by status (the target is no 5xx); each process's RSS over time with its
least-squares slope in MiB per minute (unbounded growth shows as a steady positive slope); the
broker's queue depths over time. No timing is asserted anywhere: the figures go to RESULTS.md.

    .venv/bin/python bench/load.py --duration 600 \\
        --postgres postgresql://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
FINAL = ("succeeded", "failed", "cancelled")
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} did not come up within {timeout:.0f}s")


@dataclass
class Recorder:
    """Latencies by endpoint, and statuses, from every client thread."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, client: httpx.Client, method: str, url: str, endpoint: str,
             **kwargs: Any) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            with self.lock:
                self.statuses[endpoint][0] += 1  # 0: no response at all
                self.failures.append(f"{endpoint}: {exc!r}")
            return None
        elapsed = time.perf_counter() - start
        with self.lock:
            self.latencies[endpoint].append(elapsed)
            self.statuses[endpoint][response.status_code] += 1
            if response.status_code >= 500:
                self.failures.append(f"{endpoint}: {response.status_code} {response.text[:200]}")
        return response


class Stack:
    """The processes under test, started and stopped by the bench."""

    def __init__(self, postgres: str, redis: str, work: Path) -> None:
        self.admin_url, self.redis, self.work = postgres, redis, work
        self.db = f"corral_bench_{uuid.uuid4().hex[:8]}"
        self.api_port, self.chroma_port, self.model_port = _free_port(), _free_port(), _free_port()
        self.metrics_port = _free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        suffix = uuid.uuid4().hex[:6]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")},
            "CORRAL_MODE": "server", "CORRAL_AUTH": "required",
            "CORRAL_DATABASE_URL": f"{postgres.rsplit('/', 1)[0]}/{self.db}",
            "CORRAL_REDIS_URL": redis, "CORRAL_CHROMA_HOST": "127.0.0.1",
            "CORRAL_CHROMA_PORT": str(self.chroma_port), "CORRAL_DATA_DIR": str(work / "data"),
            "CORRAL_INGEST_QUEUE": f"ingest-bench-{suffix}", "CORRAL_AGENT_QUEUE": f"agent-bench-{suffix}",
            "CORRAL_CHAT_BACKEND": "openai", "CORRAL_OPENAI_BASE_URL": f"http://127.0.0.1:{self.model_port}/v1",
            "CORRAL_OPENAI_MODEL": "slow", "CORRAL_CHAT_CONTEXT_WINDOW": "8192",
            "CORRAL_RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }

    def _sql(self, statement: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
                                  isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
        engine.dispose()

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=self.env, stdout=(self.work / log).open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self) -> str:
        self._sql(f'CREATE DATABASE "{self.db}"')
        self._spawn([str(BIN / "chroma"), "run", "--path", str(self.work / "chroma"), "--host",
                     "127.0.0.1", "--port", str(self.chroma_port)], "chroma.log")
        self._spawn([sys.executable, str(REPO / "tests" / "platform" / "slow_openai.py"),
                     str(self.model_port), "0.005", "24"], "model.log")
        _wait("chroma", lambda: httpx.get(f"http://127.0.0.1:{self.chroma_port}/api/v2/heartbeat",
                                          timeout=1).is_success, 90)
        subprocess.run([str(BIN / "corral"), "db", "upgrade"], env=self.env, check=True,
                       capture_output=True, timeout=300)
        created = subprocess.run([str(BIN / "corral"), "keys", "create", "--admin", "--name", "bench",
                                  "--json"], env=self.env, check=True, capture_output=True, text=True,
                                 timeout=300)
        secret = str(json.loads(created.stdout)["secret"])
        self.stack = self._spawn([str(BIN / "corral"), "stack", "up", "--no-inference", "--port",
                                  str(self.api_port), "--metrics-port", str(self.metrics_port)],
                                 "stack.log")
        _wait("the API", lambda: httpx.get(f"{self.url}/readyz", timeout=3).is_success, 180)
        _wait("the workers", lambda: "ready." in (self.work / "stack.log").read_text()
              and (self.work / "stack.log").read_text().count("ready.") >= 2, 180)
        return secret

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def processes(self) -> dict[str, psutil.Process]:
        """The stack's processes by role (api, ingest, agent, chroma, model): for each, the largest
        process whose command line says so (not honcho's ``sh -c`` wrapper around it)."""
        found: dict[str, tuple[int, psutil.Process]] = {}
        for proc in self.procs:
            try:
                family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.Error:
                continue
            for p in family:
                try:
                    line, rss = " ".join(p.cmdline()), p.memory_info().rss
                except psutil.Error:
                    continue
                role = ("api" if " serve " in f"{line} " else "ingest" if "-Q ingest" in line
                        else "agent" if "-Q agent" in line else "chroma" if "chroma run" in line
                        else "model" if "slow_openai" in line else None)
                if role and rss > found.get(role, (0, p))[0]:
                    found[role] = (rss, p)
        return {role: p for role, (_, p) in found.items()}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=60)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, signal.SIGKILL)
        try:
            self._sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        except Exception as exc:
            print(f"could not drop {self.db}: {exc!r}", file=sys.stderr)


def _sign_in(client: httpx.Client, rec: Recorder, base: str, secret: str) -> None:
    page = rec.call(client, "GET", f"{base}/signin", "GET /signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text if page is not None else "")
    rec.call(client, "POST", f"{base}/signin", "POST /signin", follow_redirects=False,
             data={"api_key": secret, "csrf_token": token.group(1) if token else "", "next": "/corpora"})


def _client_loop(n: int, base: str, secret: str, deadline: float, rec: Recorder, docs: list[str]) -> None:
    auth = {"Authorization": f"Bearer {secret}"}
    rng = random.Random(n)
    with httpx.Client(timeout=120) as api, httpx.Client(timeout=120) as web:
        _sign_in(web, rec, base, secret)
        corpus = f"load{n}"
        first = True
        while time.monotonic() < deadline:
            # The first upload creates the client's corpus: runs and its pages need it.
            action = "upload" if first else rng.choices(["upload", "run", "dashboard", "list"],
                                                         weights=[2, 3, 3, 2])[0]
            first = False
            if action == "upload":
                body = f"# Note {rng.randrange(10**6)}\n\n{rng.choice(docs)}\n".encode()
                r = rec.call(api, "POST", f"{base}/v1/corpora/{corpus}/documents",
                             "POST /v1/corpora/{name}/documents", headers=auth,
                             files={"files": (f"note{rng.randrange(50)}.md", body, "text/markdown")})
                if r is not None and r.status_code == 202:
                    job = r.json()["job_id"]
                    while time.monotonic() < deadline + 60:
                        got = rec.call(api, "GET", f"{base}/v1/jobs/{job}", "GET /v1/jobs/{job_id}",
                                       headers=auth)
                        if got is None or got.json().get("state") in ("succeeded", "failed", "cancelled"):
                            break
                        time.sleep(0.5)
            elif action == "run":
                r = rec.call(api, "POST", f"{base}/v1/corpora/{corpus}/runs", "POST /v1/corpora/{name}/runs",
                             headers=auth, json={"question": "What does the note say?"})
                if r is not None and r.status_code == 202:
                    run = r.json()["run_id"]
                    while time.monotonic() < deadline + 60:
                        got = rec.call(api, "GET", f"{base}/v1/runs/{run}", "GET /v1/runs/{run_id}",
                                       headers=auth)
                        if got is None or got.json().get("state") in ("succeeded", "failed", "cancelled"):
                            break
                        time.sleep(0.3)
            elif action == "dashboard":
                for path, endpoint in (("/corpora", "GET /corpora (page)"),
                                       (f"/corpora/{corpus}", "GET /corpora/{name} (page)"),
                                       ("/jobs", "GET /jobs (page)")):
                    rec.call(web, "GET", f"{base}{path}", endpoint)
            else:
                for path in ("/v1/corpora", "/v1/jobs?limit=20", "/v1/runs?limit=20"):
                    rec.call(api, "GET", f"{base}{path}", f"GET {path.split('?')[0]}", headers=auth)


def _warm_up(base: str, secret: str) -> None:
    """One ingest and one run before the clock starts: the workers load their models on first use,
    which is start-up, not load."""
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(timeout=300) as client:

        def finished(url: str) -> bool:
            return client.get(f"{base}{url}", headers=auth).json()["state"] in FINAL

        job = client.post(f"{base}/v1/corpora/warmup/documents", headers=auth,
                          files={"files": ("w.md", b"# Warm up\n\nNothing to see.\n", "text/markdown")})
        job.raise_for_status()
        _wait("the warm-up ingest", lambda: finished(f"/v1/jobs/{job.json()['job_id']}"), 300)
        run = client.post(f"{base}/v1/corpora/warmup/runs", headers=auth, json={"question": "Anything?"})
        run.raise_for_status()
        _wait("the warm-up run", lambda: finished(f"/v1/runs/{run.json()['run_id']}"), 300)


def _slope_mib_per_min(series: list[tuple[float, float]]) -> float:
    if len(series) < 3:
        return 0.0
    xs = [t / 60 for t, _ in series]
    ys = [b / 2**20 for _, b in series]
    return float(statistics.linear_regression(xs, ys).slope)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS/queue samples")
    parser.add_argument("--postgres", default=os.environ.get("CORRAL_TEST_DATABASE_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis", default=os.environ.get("CORRAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    args = parser.parse_args()

    docs = [p.read_text(errors="replace")[:3000] for p in sorted((REPO / "core").rglob("*.py"))[:40]]
    with tempfile.TemporaryDirectory(prefix="corral-load-") as tmp:
        stack = Stack(args.postgres, args.redis, Path(tmp))
        try:
            secret = stack.start()
            _warm_up(stack.url, secret)
            rec = Recorder()
            rss: dict[str, list[tuple[float, float]]] = defaultdict(list)
            queues: list[tuple[float, int, int]] = []
            started = time.monotonic()
            deadline = started + args.duration
            stop = threading.Event()

            def sample() -> None:
                import redis

                broker = redis.Redis.from_url(args.redis)
                while not stop.is_set():
                    now = time.monotonic() - started
                    for role, proc in stack.processes().items():
                        with contextlib.suppress(psutil.Error):
                            rss[role].append((now, float(proc.memory_info().rss)))
                    queues.append((now, int(broker.llen(stack.env["CORRAL_INGEST_QUEUE"])),  # type: ignore[arg-type]
                                   int(broker.llen(stack.env["CORRAL_AGENT_QUEUE"]))))  # type: ignore[arg-type]
                    stop.wait(args.sample)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            clients = [threading.Thread(target=_client_loop,
                                        args=(n, stack.url, secret, deadline, rec, docs))
                       for n in range(args.clients)]
            for t in clients:
                t.start()
            for t in clients:
                t.join()
            elapsed = time.monotonic() - started
            stop.set()
            sampler.join(timeout=30)
        finally:
            stack.stop()
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    log.replace(args.logs / log.name)

    endpoints = {
        name: {"requests": len(v), "p50_ms": round(1000 * _percentile(v, 0.50), 1),
               "p95_ms": round(1000 * _percentile(v, 0.95), 1),
               "p99_ms": round(1000 * _percentile(v, 0.99), 1)}
        for name, v in sorted(rec.latencies.items()) if v
    }
    statuses = {name: dict(s) for name, s in sorted(rec.statuses.items())}
    total = sum(sum(s.values()) for s in statuses.values())
    server_errors = sum(n for s in statuses.values() for code, n in s.items() if code >= 500 or code == 0)
    results = {
        "duration_s": round(elapsed, 1), "clients": args.clients, "requests": total,
        "throughput_rps": round(total / elapsed, 2), "server_errors": server_errors,
        "endpoints": endpoints, "statuses": statuses, "failures": rec.failures[:20],
        "rss_mib": {role: {"first": round(s[0][1] / 2**20, 1), "last": round(s[-1][1] / 2**20, 1),
                           "max": round(max(b for _, b in s) / 2**20, 1),
                           "slope_mib_per_min": round(_slope_mib_per_min(s), 3)}
                    for role, s in sorted(rss.items()) if s},
        "queue_depth": {"samples": len(queues), "ingest_max": max((q[1] for q in queues), default=0),
                        "agent_max": max((q[2] for q in queues), default=0),
                        "ingest_mean": round(statistics.fmean(q[1] for q in queues), 2) if queues else 0,
                        "agent_mean": round(statistics.fmean(q[2] for q in queues), 2) if queues else 0},
    }
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
