"""The OpenAI-compatible server, driven over loopback HTTP by the real ``openai`` client.

The server runs in a thread (uvicorn) over a tiny random Llama with SmolLM2's tokenizer: its words are
noise, so the tests check shapes, constraints and errors, and use enum-only schemas that finish fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
import uvicorn

from corral.inference.engine import Engine, EngineOptions, engine_from_hf
from corral.inference.hf import HFChatModel
from corral.inference.server import create_inference_app

UNIT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "set_unit",
        "description": "Choose the temperature unit.",
        "parameters": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"]},
    },
}
FLAG_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "set_flag",
        "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"]},
    },
}
HI = [{"role": "user", "content": "hi"}]


def tiny_moe_engine(tiny_chat_model: Path) -> Engine:
    """The embedded engine over a random 2-layer Qwen3-MoE (4 experts, top-2) with SmolLM2's tokenizer and
    an in-memory prefix cache: real routing and cache counters for ``/metrics``."""
    from transformers import AutoTokenizer, Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_chat_model)
    config = Qwen3MoeConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_experts=4,
        num_experts_per_tok=2, decoder_sparse_step=1, max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id,
    )
    model = Qwen3MoeForCausalLM(config).eval()
    engine = engine_from_hf(tok, model, model_path=tiny_chat_model,
                            options=EngineOptions(weights="fp32", block_size=4))
    engine.model_id = engine.name = "tiny-moe"
    return engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(engines: Mapping[str, Any], api_key: str | None = None) -> Iterator[str]:
    """The app over ``engines`` on a free loopback port, in a thread; yields the base URL."""
    app = create_inference_app(engines, max_body_bytes=1024 * 1024, default_max_tokens=16, api_key=api_key)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tiny_chat_model: Path) -> Iterator[str]:
    model = HFChatModel(tiny_chat_model)
    with serving({"tiny": model, "tiny-moe": tiny_moe_engine(tiny_chat_model)}) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_models_and_health(client: openai.OpenAI, server: str) -> None:
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["tiny", "tiny-moe"]
    assert client.models.retrieve("tiny").id == "tiny"
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok", "models": ["tiny", "tiny-moe"]}


def test_completion_is_reproducible_and_counts_usage(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="tiny", messages=HI, max_tokens=6, temperature=0)
    again = client.chat.completions.create(model="tiny", messages=HI, max_completion_tokens=6, temperature=0)
    assert first.object == "chat.completion" and first.model == "tiny"
    choice = first.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    assert choice.message.content == again.choices[0].message.content
    assert first.usage is not None and first.usage.completion_tokens == 6
    assert first.usage.total_tokens == first.usage.prompt_tokens + 6 and first.usage.prompt_tokens > 10
    seeded = [client.chat.completions.create(model="tiny", messages=HI, max_tokens=5, temperature=1.0,
                                             seed=42).choices[0].message.content for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_default_max_tokens_applies(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="tiny", messages=HI, temperature=0)
    assert out.usage is not None and out.usage.completion_tokens <= 16


def test_streaming_matches_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="tiny", messages=HI, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(
        model="tiny", messages=HI, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8


def test_stop_strings_cut_the_answer(client: openai.OpenAI) -> None:
    sampled = {"model": "tiny", "messages": HI, "max_tokens": 12, "temperature": 1.0, "seed": 9}
    whole = client.chat.completions.create(**sampled)  # type: ignore[call-overload]
    text = whole.choices[0].message.content or ""
    words = text.split()
    assert len(words) >= 3, text
    stop = words[2]
    cut = client.chat.completions.create(stop=[stop], **sampled)  # type: ignore[call-overload]
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]


def test_required_tool_call(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "use celsius"}], tools=[UNIT_TOOL, FLAG_TOOL],
        tool_choice="required", max_tokens=60, temperature=0.7, seed=1,
    )
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1 and calls[0].type == "function"
    args = json.loads(calls[0].function.arguments)
    if calls[0].function.name == "set_unit":
        assert args in ({"unit": "c"}, {"unit": "f"})
    else:
        assert calls[0].function.name == "set_flag" and isinstance(args["on"], bool)
    assert calls[0].id.startswith("call_")


def test_named_tool_choice_and_a_follow_up_turn(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "flag on"}], tools=[UNIT_TOOL, FLAG_TOOL],
        tool_choice={"type": "function", "function": {"name": "set_flag"}}, max_tokens=60, temperature=0,
    )
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "set_flag"
    follow = client.chat.completions.create(
        model="tiny", max_tokens=4, temperature=0, tools=[UNIT_TOOL, FLAG_TOOL],
        messages=[{"role": "user", "content": "flag on"},
                  {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                  {"role": "tool", "tool_call_id": call.id, "content": "done"}],
    )
    assert follow.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_auto_tool_choice_gives_an_answer_or_a_valid_call(client: openai.OpenAI) -> None:
    for seed in range(3):
        out = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], tools=[UNIT_TOOL],
            max_tokens=30, temperature=1.0, seed=seed,
        )
        choice = out.choices[0]
        if choice.finish_reason == "tool_calls":
            assert choice.message.tool_calls and choice.message.tool_calls[0].function.name == "set_unit"
        else:
            assert choice.message.content is not None
            started_call = choice.message.content.lstrip().startswith("<tool_call>")
            assert not started_call or choice.finish_reason == "length"


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="tiny", messages=HI, tools=[UNIT_TOOL], tool_choice="required", max_tokens=60,
        temperature=0, stream=True,
    ))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].function is not None
    assert calls[0].function.name == "set_unit"
    assert json.loads(calls[0].function.arguments or "")["unit"] in ("c", "f")
    assert not "".join(d.content or "" for d in deltas)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "size": {"enum": ["s", "m", "l"]}},
              "required": ["ok", "size"], "additionalProperties": False}
    for stream in (False, True):
        kwargs: dict[str, Any] = dict(
            model="tiny", messages=HI, max_tokens=40, temperature=1.0, seed=5,
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        )
        if stream:
            text = "".join(c.choices[0].delta.content or ""
                           for c in client.chat.completions.create(stream=True, **kwargs) if c.choices)
        else:
            out = client.chat.completions.create(**kwargs)
            assert out.choices[0].finish_reason == "stop"
            text = out.choices[0].message.content or ""
        doc = json.loads(text)
        assert set(doc) == {"ok", "size"} and doc["size"] in ("s", "m", "l")


def test_json_object_response_format_starts_an_object(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="tiny", messages=HI, max_tokens=12, temperature=0,
                                         response_format={"type": "json_object"})
    text = out.choices[0].message.content or ""
    assert text.startswith("{")
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


def error_of(call: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as err:
        call()
    return err.value


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    err = error_of(lambda: client.chat.completions.create(model="gpt-9", messages=HI))
    assert err.status_code == 404 and isinstance(err.body, dict)
    assert err.body["code"] == "model_not_found" and "gpt-9" in err.body["message"]
    assert error_of(lambda: client.models.retrieve("gpt-9")).status_code == 404


def test_context_overflow_is_400_context_length_exceeded(client: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "word " * 2500}]
    err = error_of(lambda: client.chat.completions.create(model="tiny", messages=long))
    assert err.status_code == 400 and isinstance(err.body, dict)
    assert err.body["code"] == "context_length_exceeded" and "2048" in err.body["message"]
    err = error_of(lambda: client.chat.completions.create(model="tiny", messages=HI, max_tokens=5000))
    assert err.status_code == 400 and err.body["code"] == "context_length_exceeded"  # type: ignore[index]
    err = error_of(lambda: client.chat.completions.create(model="tiny", messages=long, stream=True))
    assert err.status_code == 400


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "wrong"}}}]}, None),
        ({"tools": [UNIT_TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
         "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 3}}}},
         None),
        ({"temperature": 5}, "temperature"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": -9}, "presence_penalty"),
        ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    client: openai.OpenAI, kwargs: dict[str, Any], param: str | None
) -> None:
    request = {"model": "tiny", "messages": HI, "max_tokens": 4, **kwargs}
    err = error_of(lambda: client.chat.completions.create(**request))
    assert err.status_code == 400 and isinstance(err.body, dict)
    assert err.body["type"] == "invalid_request_error" and err.body["message"]
    if param is not None:
        assert err.body["param"] == param


def test_raw_http_garbage(server: str) -> None:
    url = f"{server}/v1/chat/completions"
    headers = {"content-type": "application/json"}
    bad_json = httpx.post(url, content=b'{"model": "tiny", "messages": [', headers=headers)
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]["message"]
    wrong_type = httpx.post(url, json={"model": "tiny", "messages": "hi"})
    assert wrong_type.status_code == 400 and wrong_type.json()["error"]["param"] == "messages"
    not_object = httpx.post(url, json=[1, 2, 3])
    assert not_object.status_code == 400
    huge = httpx.post(url, content=b'{"model": "tiny", "messages": ["' + b"x" * (2 * 1024 * 1024) + b'"]}',
                      headers=headers)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"

    def chunked() -> Iterator[bytes]:
        yield b'{"model": "tiny", "messages": ["'
        for _ in range(64):
            yield b"y" * 32768
        yield b'"]}'

    streamed = httpx.post(url, content=chunked(), headers=headers)
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "request_too_large"
    nested = httpx.post(url, content=b'{"model": "tiny", "messages": ' + b"[" * 50000 + b"]" * 50000 + b"}",
                        headers=headers)
    assert nested.status_code in (400, 413)
    unknown_route = httpx.get(f"{server}/v1/nothing")
    assert unknown_route.status_code == 404 and "error" in unknown_route.json()
    # The server still answers after all that.
    assert httpx.get(f"{server}/healthz").status_code == 200


def test_concurrent_requests(client: openai.OpenAI) -> None:
    def one(i: int) -> str:
        out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"n{i}"}],
                                             max_tokens=5, temperature=0)
        return out.choices[0].message.content or ""

    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(one, range(4)))
    assert parallel == [one(i) for i in range(4)]


def test_metrics(client: openai.OpenAI, server: str) -> None:
    client.chat.completions.create(model="tiny", messages=HI, max_tokens=5, temperature=0)
    for _ in range(2):  # the second request finds the first one's prompt blocks in the prefix cache
        client.chat.completions.create(model="tiny-moe", messages=HI, max_tokens=5, temperature=0)
    error_of(lambda: client.chat.completions.create(model="tiny", messages=[]))
    page = httpx.get(f"{server}/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for line in page.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['corral_inference_completion_tokens_total{model="tiny"}'] >= 5
    assert samples['corral_inference_requests_total{model="tiny",outcome="ok"}'] >= 1
    assert samples['corral_inference_requests_total{model="tiny",outcome="http_400"}'] >= 1
    assert samples['corral_inference_tokens_per_second{model="tiny"}'] > 0
    assert samples['corral_inference_tokens_per_second{model="tiny-moe"}'] > 0
    assert 0.0 < samples['corral_inference_prefix_cache_hit_rate{model="tiny-moe"}'] < 1.0
    assert samples['corral_inference_prefix_cache_hit_rate{model="tiny"}'] == 0.0
    for layer in ("0", "1"):  # each MoE layer's expert shares add up to the whole of its routing
        metric = 'corral_inference_expert_utilisation{{expert="{}",layer="{}",model="tiny-moe"}}'
        shares = [samples[metric.format(e, layer)] for e in range(4)]
        assert abs(sum(shares) - 1.0) < 1e-6 and all(0.0 <= x <= 1.0 for x in shares)


def series(page: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in page.splitlines() if line and not line.startswith("#")}


def test_unknown_models_are_refused_before_they_become_metric_series(
    client: openai.OpenAI, server: str
) -> None:
    before = series(httpx.get(f"{server}/metrics").text)
    for i in range(30):
        request = {"model": f"made-up-{i}-{os.urandom(4).hex()}", "messages": HI,
                   "stream": i % 2 == 1}
        err = error_of(functools.partial(client.chat.completions.create, **request))
        assert err.status_code == 404 and isinstance(err.body, dict)
        assert err.body["code"] == "model_not_found" and err.body["type"] == "invalid_request_error"
    after = series(httpx.get(f"{server}/metrics").text)
    assert not any("made-up" in s for s in after)
    assert after - before <= {s for s in after if 'model="unknown"' in s}


def test_an_api_key_is_required_when_configured(tiny_chat_model: Path) -> None:
    key = "sk-" + os.urandom(16).hex()
    with serving({"tiny": HFChatModel(tiny_chat_model)}, api_key=key) as url:
        chat = f"{url}/v1/chat/completions"
        body = {"model": "tiny", "messages": HI, "max_tokens": 2}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {key}"},
                        {"Authorization": f"Bearer {key}x"}, {"Authorization": "Bearer"},
                        {"X-API-Key": key}):
            refused = httpx.post(chat, json=body, headers=headers)
            assert refused.status_code == 401, (headers, refused.text)
            assert refused.json()["error"]["code"] == "invalid_api_key"
            assert refused.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/healthz").status_code == 200  # the liveness probe stays open
        ready = httpx.get(f"{url}/readyz")  # and so does the readiness probe, naming only models
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "models": ["tiny"]}
        # Refused before the body is read: a huge body without the key is a 401, not a 413.
        assert httpx.post(chat, content=b"x" * (2 * 1024 * 1024)).status_code == 401
        with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as c:
            out = c.chat.completions.create(model="tiny", messages=HI, max_tokens=2, temperature=0)
            assert out.usage is not None and out.usage.completion_tokens == 2
        with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0) as c:
            assert error_of(lambda: c.models.list()).status_code == 401
        assert httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        # The agents' OpenAI backend sends CORRAL_OPENAI_API_KEY as the Bearer token.
        from corral.agents.backends.remote import remote_chat_model

        agent_chat = remote_chat_model(f"{url}/v1", "tiny", key, max_tokens=2, context_window=2048,
                                       token_ids=lambda t: [0] * len(t))
        assert agent_chat.invoke("hi").usage_metadata is not None
        keyless = remote_chat_model(f"{url}/v1", "tiny", None, max_tokens=2, context_window=2048,
                                    token_ids=lambda t: [0] * len(t))
        with pytest.raises(openai.AuthenticationError):
            keyless.invoke("hi")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_cli_refuses_a_public_bind_without_a_key(tmp_path: Path, tiny_chat_model: Path, host: str) -> None:
    corral = Path(sys.executable).parent / "corral"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_DATA_DIR"] = str(tmp_path)
    r = subprocess.run([str(corral), "inference", "serve", "--model", str(tiny_chat_model), "--host", host],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "CORRAL_INFERENCE_API_KEY" in r.stderr and "Traceback" not in r.stderr


def test_cli_binds_a_public_address_with_a_key(tmp_path: Path) -> None:
    """With CORRAL_INFERENCE_API_KEY the public bind passes the check (and fails later, on the model)."""
    corral = Path(sys.executable).parent / "corral"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_DATA_DIR=str(tmp_path), CORRAL_INFERENCE_API_KEY="sk-" + os.urandom(8).hex())
    r = subprocess.run([str(corral), "inference", "serve", "--model", str(tmp_path / "nope"), "--host",
                        "0.0.0.0"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no model at" in r.stderr and "CORRAL_INFERENCE_API_KEY" not in r.stderr


def test_cli_serves_a_model_folder(tiny_chat_model: Path, tmp_path: Path) -> None:
    port = free_port()
    corral = Path(sys.executable).parent / "corral"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(CORRAL_DATA_DIR=str(tmp_path), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [str(corral), "inference", "serve", "--model", str(tiny_chat_model), "--backend", "hf",
         "--port", str(port), "--name", "tiny-cli"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0) as c:
            out = c.chat.completions.create(model="tiny-cli", messages=HI, max_tokens=3, temperature=0)
        assert out.usage is not None and out.usage.completion_tokens == 3
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout:
            proc.stdout.close()


def test_cli_reports_a_missing_model_without_a_traceback(tmp_path: Path) -> None:
    corral = Path(sys.executable).parent / "corral"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_DATA_DIR"] = str(tmp_path)
    r = subprocess.run([str(corral), "inference", "serve", "--model", str(tmp_path / "nope")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no model at" in r.stderr and "Traceback" not in r.stderr


def test_serves_the_embedded_engine(tiny_chat_model: Path) -> None:
    from corral.inference.engine import EngineOptions, load_engine

    engine = load_engine(tiny_chat_model, options=EngineOptions(weights="fp32", block_size=16))
    with serving({"engine": engine}) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="x",
                                                           max_retries=0) as c:
        messages = [{"role": "user", "content": "a question long enough to fill a few cache blocks " * 3}]
        first = c.chat.completions.create(model="engine", messages=messages, max_tokens=4, temperature=0)
        again = c.chat.completions.create(model="engine", messages=messages, max_tokens=4, temperature=0)
        assert first.choices[0].message.content == again.choices[0].message.content
        assert again.usage is not None and again.usage.prompt_tokens_details is not None
        assert (again.usage.prompt_tokens_details.cached_tokens or 0) > 0
        call = c.chat.completions.create(model="engine", messages=HI, tools=[UNIT_TOOL],
                                         tool_choice="required", max_tokens=40, temperature=0)
        assert call.choices[0].finish_reason == "tool_calls"
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="engine", messages=messages, max_tokens=4, temperature=0, stream=True) if ch.choices)
        assert streamed == first.choices[0].message.content
        penalised = c.chat.completions.create(model="engine", messages=messages, max_tokens=4, temperature=0,
                                              frequency_penalty=2.0, presence_penalty=2.0,
                                              extra_body={"repetition_penalty": 1.5})
        assert penalised.usage is not None and penalised.usage.completion_tokens >= 1
        page = httpx.get(f"{url}/metrics").text
        hit = [ln for ln in page.splitlines() if ln.startswith("corral_inference_prefix_cache_hit_rate")]
        assert hit and float(hit[0].rsplit(" ", 1)[1]) > 0


@pytest.mark.model
def test_real_smollm2_makes_a_correct_tool_call() -> None:
    """SmolLM2-135M (the default GGUF) over HTTP: the grammar forces the format, the model fills it."""
    from corral.core.config import Settings

    folder, gguf = Settings(chat_model="smollm2-135m").resolved_chat_model()
    model = HFChatModel(folder, gguf)
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]},
        }, "required": ["city", "unit"]},
    }}
    search = {"type": "function", "function": {
        "name": "search_docs", "description": "Search the documentation.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string", "maxLength": 80}},
                       "required": ["query"]},
    }}
    with serving({"smollm2": model}) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="x",
                                                           max_retries=0, timeout=120) as c:
        out = c.chat.completions.create(
            model="smollm2", tools=[weather, search], tool_choice="required", max_tokens=60, temperature=0,
            messages=[{"role": "user", "content": "What is the weather in Paris right now, in celsius?"}],
        )
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert out.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
