"""Fixtures of the platform tests that run real servers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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
