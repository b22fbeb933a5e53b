"""Fixtures of the platform tests that run real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    log = (tmp_path / "chroma.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "chroma"), "run", "--path", str(tmp_path / "chroma-server"), "--host",
         "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            pytest.fail(f"chroma server did not start: {(tmp_path / 'chroma.log').read_text()}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def enter_server_mode(monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str, chroma_port: int,
                      **extra: str) -> dict[str, str]:
    """Point this test's Corral at the real PostgreSQL, Redis and Chroma server, with ingest and agent
    queues of its own (nothing else on the broker takes or leaves its messages), migrate the database,
    and return the environment for subprocesses. ``extra``: more ``CORRAL_*`` settings."""
    from corral.core.config import get_settings

    suffix = uuid.uuid4().hex[:8]
    values = {
        "CORRAL_MODE": "server", "CORRAL_DATABASE_URL": postgres_url, "CORRAL_REDIS_URL": redis_url,
        "CORRAL_CHROMA_HOST": "127.0.0.1", "CORRAL_CHROMA_PORT": str(chroma_port),
        "CORRAL_INGEST_QUEUE": f"ingest-test-{suffix}", "CORRAL_AGENT_QUEUE": f"agent-test-{suffix}",
        **extra,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    env = {**os.environ}
    upgrade = subprocess.run([str(BIN / "corral"), "db", "upgrade"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A `corral worker` process (ingest and agent queues) logging to ``log_path``, once it is ready."""
    proc = subprocess.Popen([str(BIN / "corral"), "worker", "--loglevel", "INFO"], env=env,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "ready." not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker did not start:\n{log_path.read_text()}")
        time.sleep(0.3)
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextmanager
def serve_app() -> Iterator[str]:
    """``corral serve``'s app (as the settings now say) on a uvicorn thread of this process, on a free
    loopback port; yields its base URL and stops it after."""
    import uvicorn

    from corral.platform.api.app import create_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(bind_host="127.0.0.1"), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
