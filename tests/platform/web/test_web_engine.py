"""The Engine page: the embedded engine's statistics once the model is loaded (never loading it), an
inference service's Prometheus metrics, and the per-expert heatmap."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from corral.platform.api.app import create_app
from corral.platform.web import engine as engine_data
from corral.platform.web.routes import engine as engine_page
from tests.conftest import clear_caches, issue_key
from tests.platform.web.test_web_access import BASE, sign_in

METRICS = """\
# HELP corral_inference_tokens_per_second Decode throughput.
# TYPE corral_inference_tokens_per_second gauge
corral_inference_tokens_per_second{model="olmoe"} 41.5
# TYPE corral_inference_prefix_cache_hit_rate gauge
corral_inference_prefix_cache_hit_rate{model="olmoe"} 0.75
# TYPE corral_inference_expert_utilisation gauge
corral_inference_expert_utilisation{expert="0",layer="0",model="olmoe"} 0.5
corral_inference_expert_utilisation{expert="1",layer="0",model="olmoe"} 0.25
corral_inference_expert_utilisation{expert="2",layer="0",model="olmoe"} 0.25
corral_inference_expert_utilisation{expert="0",layer="1",model="olmoe"} 0.1
corral_inference_expert_utilisation{expert="2",layer="1",model="olmoe"} 0.9
"""


@pytest.fixture
def client(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CORRAL_AUTH", "required")
    clear_caches()
    with TestClient(create_app(), base_url=BASE) as c:
        sign_in(c, issue_key("admin"))
        yield c


def test_the_page_reads_the_embedded_engine_without_loading_it(client: TestClient, tmp_path: Path) -> None:
    from corral.platform.composition import get_chat_model

    waiting = client.get("/engine")
    assert waiting.status_code == 200 and "not loaded in this process yet" in waiting.text
    assert not get_chat_model.loaded  # looking does not load the model

    docs = tmp_path / "kb"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe answer is in here.\n")
    from corral.ingestion.ingest import ingest_now

    ingest_now("kb", docs)
    run_id = client.post("/v1/corpora/kb/runs", json={"question": "Where is the answer?"},
                         headers={"Authorization": f"Bearer {issue_key('ask')}"}).json()["run_id"]
    deadline = time.monotonic() + 120
    while not get_chat_model.loaded or client.get(f"/runs/{run_id}").text.count("state-running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page = client.get("/engine")
    assert 'data-testid="tps"' in page.text and "No expert statistics" in page.text  # a dense model
    assert "readings, one every 15 s" in page.text


def test_an_inference_services_metrics_become_a_heatmap(client: TestClient,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    reading = engine_data.read_metrics_text(METRICS, 1.0, "http://inference:8322/metrics")
    assert reading.tokens_per_second == 41.5 and reading.prefix_cache_hit_rate == 0.75
    assert reading.experts == {0: [0.5, 0.25, 0.25], 1: [0.1, 0.0, 0.9]}  # a missing expert is 0

    monkeypatch.setattr(engine_page, "read_engine", lambda: reading)
    page = client.get("/engine")
    assert page.status_code == 200 and "41.5" in page.text and "75.0%" in page.text
    heat = page.text.split('data-testid="heatmap"', 1)[1].split("</table>", 1)[0]
    assert heat.count("<td ") == 6 and "rgba(16, 100, 170, 1.000)" in heat  # the busiest cell is darkest


def test_an_unreachable_inference_service_is_said_so(client: TestClient,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.platform.conftest import free_port

    monkeypatch.setenv("CORRAL_CHAT_BACKEND", "openai")
    monkeypatch.setenv("CORRAL_OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("CORRAL_OPENAI_MODEL", "x")
    monkeypatch.setenv("CORRAL_CHAT_CONTEXT_WINDOW", "8192")
    clear_caches()
    page = client.get("/engine")
    assert page.status_code == 200 and "metrics did not answer" in page.text
