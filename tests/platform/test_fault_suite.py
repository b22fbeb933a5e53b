"""The fault suite: real processes broken mid-work, each test asserting that nothing is lost, nothing
is duplicated, every job and run ends final, the watchdogs' actions are recorded — and how long
recovery took (printed; see bench/RESULTS.md). Private instances (a ``redis-server`` on its own
port, an ``initdb`` PostgreSQL, a Chroma server) stand in where a shared service must not be broken.

The heartbeat period is shortened (``CORRAL_JOB_STALE_SECONDS=4``) so each test takes seconds; the
default (30 s) gives the same recoveries within 45 s (``CORRAL_FAULT_STALE_SECONDS=30`` shows it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.platform.conftest import enter_server_mode, free_port, start_worker, stop_worker

pytestmark = pytest.mark.services
BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
# Seconds without a heartbeat before the watchdogs act. Short here so that each test takes seconds;
# `CORRAL_FAULT_STALE_SECONDS=30` runs the suite at the default (bench/RESULTS.md has such a run).
STALE = os.environ.get("CORRAL_FAULT_STALE_SECONDS", "4")


def _until(what: str, check: Callable[[], Any], timeout: float, logs: list[Path] = (),  # type: ignore[assignment]
           every: float = 0.2) -> Any:
    """``check()``'s first truthy result; database errors while a service is down count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:  # a dependency down on purpose: ask again
            found = None
        if found:
            return found
        time.sleep(every)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"{what}: not within {timeout}s\n{tails}")


@dataclass
class SlowModel:
    """The slow OpenAI-compatible server (``slow_openai.py``) as a process that can be killed."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, delay: float = 0.15, tokens: int = 40) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "slow_openai.py"), str(self.port),
                                      str(delay), str(tokens)], stdout=self.log.open("a"),
                                     stderr=subprocess.STDOUT)
        _until("the slow model server starts", lambda: httpx.get(f"{self.url}/healthz", timeout=1)
               .is_success, 30, [self.log])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def slow_model(tmp_path: Path) -> Iterator[SlowModel]:
    model = SlowModel(free_port(), tmp_path / "slow-model.log")
    model.start()
    try:
        yield model
    finally:
        model.kill()


def _docs(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        (root / f"note{i:03d}.md").write_text(
            f"# Note {i}\n\nThe token for note {i} is zq{i}marker. " + "Filler sentence. " * 40 + "\n")
    return root


def _job(job_id: str) -> Any:
    from corral.core.db import session_scope
    from corral.core.services import get_job

    with session_scope() as s:
        job = get_job(s, job_id)
        s.expunge(job)
        return job


def _run(run_id: str) -> Any:
    from corral.core.db import Run, session_scope

    with session_scope() as s:
        run = s.get_one(Run, run_id)
        s.expunge(run)
        return run


def _run_events(run_id: str) -> list[tuple[str, dict[str, Any]]]:
    from corral.core.db import RunEvent, session_scope

    with session_scope() as s:
        return [(e.kind, dict(e.data)) for e in s.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq))]


def _nothing_unfinished() -> None:
    """Every job and run of this database is final."""
    from corral.core.db import Job, JobState, Run, RunState, session_scope

    with session_scope() as s:
        jobs = s.scalars(select(Job.id).where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))).all()
        runs = s.scalars(select(Run.id).where(Run.state.in_([RunState.QUEUED, RunState.RUNNING]))).all()
    assert not jobs and not runs, (jobs, runs)


def _report(fault: str, seconds: float) -> None:
    # Recovery times are part of the result: `pytest -s` shows them (bench/RESULTS.md keeps a run).
    print(f"\nrecovery[{fault}] = {seconds:.1f}s")


# -- agent runs -----------------------------------------------------------------------------------

@pytest.fixture
def run_env(corral_env: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str,
            chroma_server: int, slow_model: SlowModel) -> dict[str, str]:
    return enter_server_mode(
        monkeypatch, postgres_url, redis_url, chroma_server, CORRAL_JOB_STALE_SECONDS=STALE,
        CORRAL_CHAT_BACKEND="openai", CORRAL_OPENAI_BASE_URL=f"{slow_model.url}/v1",
        CORRAL_OPENAI_MODEL="slow", CORRAL_CHAT_CONTEXT_WINDOW="4096")


def _corpus_with_one_note(tmp_path: Path, logs: list[Path]) -> None:
    from corral.core.db import JobState
    from corral.ingestion.ingest import submit_ingest
    from corral.ingestion.sources import PathSpec

    job_id = submit_ingest("kb", PathSpec(_docs(tmp_path / "kb", 1)))
    job = _until("the corpus is ingested", lambda: (j := _job(job_id)).state.finished and j, 120, logs)
    assert job.state is JobState.SUCCEEDED, job.error


def _answering(run_id: str, logs: list[Path]) -> None:
    _until("the run streams its answer", lambda: any(k == "token" for k, _ in _run_events(run_id)),
           120, logs)


def test_an_agent_worker_or_the_inference_service_killed_mid_run_fails_the_run_clearly(
    run_env: dict[str, str], slow_model: SlowModel, tmp_path: Path
) -> None:
    """Two agent workers; the one answering is killed (SIGKILL): the other's watchdog fails the run
    within the stale period. Then the inference service is killed mid-generation: the run fails at
    once, saying why. Each time the next run is answered: nothing is left stuck."""
    from corral.core.db import RunState
    from corral.platform.runs import submit_run

    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log", slow_model.log]
    with ThreadPoolExecutor(2) as pool:  # both start at once: half the wait
        workers = list(pool.map(lambda log: start_worker(run_env, log), logs[:2]))
    question = "What is the token for note 0?"
    try:
        _corpus_with_one_note(tmp_path, logs)
        run_id = submit_run("kb", question, workspace="default")
        _answering(run_id, logs)
        # Kill the worker answering it (the one that received the run's task).
        holder = next(i for i, log in enumerate(logs[:2]) if "Task corral.agent.run[" in log.read_text())
        workers[holder].send_signal(signal.SIGKILL)
        workers[holder].wait(timeout=30)
        killed_at = time.monotonic()
        run = _until("the run ends", lambda: (r := _run(run_id)).state.finished and r, 60, logs)
        recovery = time.monotonic() - killed_at
        _report("agent worker SIGKILL mid-run", recovery)
        assert run.state is RunState.FAILED and "no heartbeat" in (run.error or ""), run.error
        assert [w["action"] for w in run.params["watchdog"]] == ["failed"]
        finals = [d for k, d in _run_events(run_id) if k == "final"]
        assert len(finals) == 1 and finals[0]["error_type"] == "interrupted"
        assert recovery < 1.5 * float(STALE) + 5
        assert "lost its worker" in logs[1 - holder].read_text()

        # The inference service killed while the surviving worker streams an answer from it.
        run_id = submit_run("kb", question, workspace="default")
        _answering(run_id, logs)
        slow_model.kill()
        killed_at = time.monotonic()
        run = _until("the run ends", lambda: (r := _run(run_id)).state.finished and r, 120, logs)
        _report("inference service SIGKILL mid-generation", time.monotonic() - killed_at)
        assert run.state is RunState.FAILED, (run.answer, logs[1 - holder].read_text()[-3000:])
        assert "stopped before finishing its answer" in (run.error or ""), run.error
        assert len([k for k, _ in _run_events(run_id) if k == "final"]) == 1

        slow_model.start()  # back up: the next run is answered
        again = submit_run("kb", question, workspace="default")
        done = _until("the next run ends", lambda: (r := _run(again)).state.finished and r, 60, logs)
        assert done.state is RunState.SUCCEEDED, done.error
        _nothing_unfinished()
    finally:
        for proc in workers:
            stop_worker(proc)


# -- ingest jobs: broker, database and vector store broken mid-job --------------------------------

class Private:
    """A private service process (its own port and data), to kill and restart at will."""

    def __init__(self, name: str, argv: list[str], ready: Callable[[], bool], log: Path) -> None:
        self.name, self.argv, self.ready, self.log = name, argv, ready, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        _until(f"{self.name} starts", self.ready, 60, [self.log])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


def _redis_answers(port: int) -> bool:
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _chroma_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).is_success
    except httpx.TransportError:
        return False


class PrivatePostgres:
    """An ``initdb`` cluster run with ``pg_ctl`` (as the ``postgres`` user when we are root, which
    PostgreSQL refuses to run as)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data, self.log = root / "data", root / "postgres.log"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self.as_owner, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run(_pg("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run(_pg("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "corral")

    def start(self) -> None:
        self._run(_pg("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run(_pg("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/corral"


def _pg(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/lib/postgresql/15/bin")
    if found is None:
        pytest.skip(f"PostgreSQL's {tool} is not installed: no private PostgreSQL")
    return found


@pytest.fixture
def private_stack(corral_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                  ) -> Iterator[tuple[Private, PrivatePostgres, Private, dict[str, str]]]:
    """A private Redis, PostgreSQL and Chroma server, Corral in server mode over them."""
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        pytest.skip("redis-server is not installed: no private broker")
    redis_port, chroma_port = free_port(), free_port()
    redis = Private("redis", [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], lambda: _redis_answers(redis_port),
                    tmp_path / "redis.log")
    chroma = Private("chroma", [str(BIN / "chroma"), "run", "--path", str(tmp_path / "chroma"),
                                "--host", "127.0.0.1", "--port", str(chroma_port)],
                     lambda: _chroma_answers(chroma_port), tmp_path / "chroma.log")
    pg_root = Path(tempfile.mkdtemp(prefix="corral-pg-"))  # outside tmp_path: its owner must reach it
    postgres = PrivatePostgres(pg_root, free_port())
    try:
        redis.start()
        chroma.start()
        postgres.init()
        env = enter_server_mode(
            monkeypatch, postgres.url, f"redis://127.0.0.1:{redis_port}/0", chroma_port,
            CORRAL_INGEST_BATCH_SIZE="1", CORRAL_JOB_STALE_SECONDS=STALE, CORRAL_JOB_MAX_ATTEMPTS="10")
        yield redis, postgres, chroma, env
    finally:
        from corral.core.db.session import dispose_engines

        dispose_engines()
        redis.kill()
        chroma.kill()
        with contextlib.suppress(AssertionError):
            postgres.stop()
        shutil.rmtree(pg_root, ignore_errors=True)


N_FILES = 8


def _ingest_through(fault: str, corpus: str, root: Path, logs: list[Path], break_it: Callable[[], None],
                    mend_it: Callable[[], None]) -> tuple[str, float]:
    """Ingest ``root`` into ``corpus``; once a few documents are done, break a service, wait, mend it;
    the job must still succeed. Returns the job id and the seconds from mending to the job's end."""
    from corral.core.db import JobState
    from corral.ingestion.ingest import submit_ingest
    from corral.ingestion.sources import PathSpec

    job_id = submit_ingest(corpus, PathSpec(root))
    _until(f"{corpus}: a few documents done", lambda: _job(job_id).done >= 2, 120, logs)
    break_it()
    time.sleep(2)  # long enough for work in flight to meet the outage
    mend_it()
    mended = time.monotonic()
    job = _until(f"{corpus}: the job ends after {fault}", lambda: (j := _job(job_id)).state.finished and j,
                 180, logs)
    recovery = time.monotonic() - mended
    _report(fault, recovery)
    assert job.state is JobState.SUCCEEDED, (job.error, logs[0].read_text()[-3000:])
    assert job.result["indexed"] == N_FILES and job.result["failed"] == 0, str(job.result)
    return job_id, recovery


def _chunks(corpus: str) -> tuple[int, set[tuple[str, str, int]], set[str]]:
    """(corpus id, {(path, document hash, ordinal)}, chunk ids) from SQL."""
    from corral.core.db import Chunk, Document, session_scope
    from corral.core.services import get_corpus

    with session_scope() as s:
        corpus_id = get_corpus(s, corpus).id
        rows = s.execute(select(Chunk.id, Document.path, Document.content_hash, Chunk.ordinal)
                         .join(Document).where(Document.corpus_id == corpus_id)).all()
    return corpus_id, {(p, h, o) for _, p, h, o in rows}, {cid for cid, _, _, _ in rows}


def test_broker_database_and_vector_store_broken_mid_job_lose_and_duplicate_nothing(
    private_stack: tuple[Private, PrivatePostgres, Private, dict[str, str]], tmp_path: Path
) -> None:
    from corral.core.db import Document, session_scope
    from corral.core.index import get_vector_store
    from corral.ingestion.ingest import submit_ingest
    from corral.ingestion.pipeline import chunk_id
    from corral.ingestion.sources import PathSpec

    redis, postgres, chroma, env = private_stack
    root = _docs(tmp_path / "kb", N_FILES)
    logs = [tmp_path / "worker.log", redis.log, chroma.log, postgres.log]
    worker = start_worker(env, logs[0])
    try:
        clean_id = submit_ingest("clean", PathSpec(root))  # the reference, and the worker warmed up
        clean = _until("the clean job ends", lambda: (j := _job(clean_id)).state.finished and j, 180, logs)
        assert clean.result["indexed"] == N_FILES, clean.result
        # The broker killed mid-queue and restarted empty: the queued batches are gone with it.
        broker_job, _ = _ingest_through("broker SIGKILL + restart", "kb-broker", root, logs, redis.kill,
                                        redis.start)
        assert any(w["action"] == "requeued" for w in _job(broker_job).params["watchdog"])
        # PostgreSQL stopped (immediate: connections cut) mid-job, then started again.
        _ingest_through("PostgreSQL stop + start", "kb-postgres", root, logs, postgres.stop,
                        postgres.start)
        # The Chroma server killed mid-batch and restarted on its data.
        _ingest_through("Chroma SIGKILL + restart", "kb-chroma", root, logs, chroma.kill, chroma.start)

        _, clean_rows, _ = _chunks("clean")
        store = get_vector_store()
        for corpus in ("kb-broker", "kb-postgres", "kb-chroma"):
            corpus_id, rows, ids = _chunks(corpus)
            assert rows == clean_rows, corpus  # the same chunks as the clean run: nothing lost
            assert ids == {chunk_id(corpus_id, *row) for row in rows}
            assert store.count(corpus_id) == len(ids), corpus  # nothing duplicated in Chroma
            assert set(store.get_embeddings(corpus_id, sorted(ids))) == ids
            with session_scope() as s:  # no document indexed twice
                paths = s.scalars(select(Document.path).join(Document.corpus).where(
                    Document.corpus.has(name=corpus))).all()
            assert len(paths) == len(set(paths)) == N_FILES
        _nothing_unfinished()
    finally:
        stop_worker(worker)


# -- the API killed with an event stream and an upload in flight ----------------------------------

def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([str(BIN / "corral"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log.open("a"), stderr=subprocess.STDOUT)
    _until("the API answers", lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
           .is_success, 90, [log])
    return proc


def _slow_multipart(boundary: str, name: str, chunks: int, started: threading.Event) -> Iterator[bytes]:
    """A multipart body that takes its time: the API is killed while it is still arriving."""
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
           "Content-Type: text/markdown\r\n\r\n# Uploaded\n\n").encode()
    for i in range(chunks):
        started.set()
        yield f"Line {i} of an upload that arrives slowly.\n".encode() * 50
        time.sleep(0.1)
    yield f"\r\n--{boundary}--\r\n".encode()


def test_the_api_killed_with_a_stream_and_an_upload_in_flight_loses_and_repeats_nothing(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    from corral.core.db import Job, RunState, session_scope
    from tests.conftest import bearer, issue_key

    env = {**run_env}
    logs = [tmp_path / "worker.log", tmp_path / "api.log"]
    worker = start_worker(env, logs[0])
    port = free_port()
    api = _serve(env, port, logs[1])
    base = f"http://127.0.0.1:{port}"
    headers = bearer(issue_key("admin"))
    try:
        _corpus_with_one_note(tmp_path, logs)
        run = httpx.post(f"{base}/v1/corpora/kb/runs", headers=headers, timeout=30,
                         json={"question": "What is the token for note 0?"}).json()
        seen: list[dict[str, str]] = []
        stream_error: list[BaseException] = []

        def follow() -> None:
            try:
                with httpx.stream("GET", f"{base}{run['events_url']}", headers=headers, timeout=60) as r:
                    for line in r.iter_lines():
                        if line.startswith("id:"):
                            seen.append({"id": line[3:].strip()})
                        elif line.startswith("event:") and seen:
                            seen[-1]["event"] = line[6:].strip()
            except httpx.HTTPError as exc:
                stream_error.append(exc)

        upload_error: list[BaseException] = []
        upload_started = threading.Event()
        boundary = "corralfaultboundary"

        def upload() -> None:
            try:
                httpx.post(f"{base}/v1/corpora/up/documents", timeout=60,
                           headers={**headers, "Idempotency-Key": "upload-1",
                                    "Content-Type": f"multipart/form-data; boundary={boundary}"},
                           content=_slow_multipart(boundary, "up.md", 200, upload_started))
            except httpx.HTTPError as exc:
                upload_error.append(exc)

        threads = [threading.Thread(target=follow), threading.Thread(target=upload)]
        for t in threads:
            t.start()
        _until("the stream carries the answer", lambda: any(e.get("event") == "token" for e in seen),
               60, logs)
        assert upload_started.wait(30)
        api.send_signal(signal.SIGKILL)
        api.wait(timeout=30)
        for t in threads:
            t.join(timeout=60)
        assert stream_error and upload_error  # both cut off mid-flight
        with session_scope() as s:  # the upload never finished: no job, nothing half-queued
            assert s.scalars(select(Job).where(Job.params["corpus"].as_string() == "up")).all() == []

        from corral.ingestion.sources.spec import upload_root
        from corral.platform.api.uploads import sweep_abandoned_uploads

        left = list(upload_root().glob("*.part"))  # what the killed process was writing
        assert len(left) == 1
        api = _serve(env, port, logs[1])
        assert left[0].exists()  # not an hour old: it could be another API process's upload
        assert sweep_abandoned_uploads(upload_root(), older_than_s=0) == [left[0].name]
        # The stream resumes where it was cut, on the new process: nothing missed, nothing twice.
        last = seen[-1]["id"]
        with httpx.stream("GET", f"{base}{run['events_url']}", timeout=60,
                          headers={**headers, "Last-Event-ID": last}) as r:
            rest = [line[3:].strip() for line in r.iter_lines() if line.startswith("id:")]
        ids = [int(e["id"]) for e in seen] + [int(i) for i in rest]
        assert ids == list(range(ids[0], ids[0] + len(ids))), ids
        assert _run(run["run_id"]).state is RunState.SUCCEEDED  # the worker went on answering
        # The upload retried with its key: accepted once, indexed once.
        retried = httpx.post(f"{base}/v1/corpora/up/documents", timeout=60,
                             headers={**headers, "Idempotency-Key": "upload-1",
                                      "Content-Type": f"multipart/form-data; boundary={boundary}"},
                             content=b"".join(_slow_multipart(boundary, "up.md", 3, threading.Event())))
        assert retried.status_code == 202, retried.text
        job_id = retried.json()["job_id"]
        job = _until("the upload's job ends", lambda: (j := _job(job_id)).state.finished and j, 120, logs)
        assert job.result["indexed"] == 1, job.result
        with session_scope() as s:
            assert len(s.scalars(select(Job).where(Job.params["corpus"].as_string() == "up")).all()) == 1
        _nothing_unfinished()
    finally:
        api.kill()
        api.wait(timeout=30)
        stop_worker(worker)
