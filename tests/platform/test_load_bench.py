"""The load bench's short form: the same script as the 10-minute run (bench/load.py), for seconds,
against a stack it starts and stops itself. No timing is asserted — only that it ran, measured every
process and the queues, and that the server answered nothing with a 5xx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parents[2]


def test_a_short_mixed_load_gets_no_server_errors(postgres_admin_url: str, redis_url: str,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load.py"), "--duration", "12", "--clients", "2",
         "--sample", "2", "--postgres", postgres_admin_url, "--redis", redis_url, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["requests"] > 0 and results["server_errors"] == 0, results["failures"]
    assert {"api", "ingest", "agent"} <= set(results["rss_mib"]), results["rss_mib"]
    assert results["queue_depth"]["samples"] > 0
    assert any(name.startswith("GET /corpora") for name in results["endpoints"])  # dashboard pages
