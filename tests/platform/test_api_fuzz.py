"""The whole REST API under schemathesis: every operation of the OpenAPI document, fuzzed with
valid and invalid data, with an admin key and without a key.

Nothing answers 5xx, and every response conforms to the document: its status code is declared, its
content type and body match the declared schema, declared headers are present. The operations come
from the live app's document, so routes added later are fuzzed without touching this file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from corral.platform.api.app import create_app
from tests.conftest import bearer, clear_caches, issue_key, wait_for_job

# Jobs and runs the fuzzer starts go on in background threads, which may use the random module
# while Hypothesis draws the next case; Hypothesis takes that for a strategy using it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning")

BASE = "http://127.0.0.1"
MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, negative_data_rejection]
# Routes anyone may call; every other one needs a key when the server is not open.
PUBLIC_PATHS = {"/healthz", "/readyz"}
# Operations the fuzzer skips, each with the reason and the test that covers it instead. Event
# streams (text/event-stream) are added automatically: a stream of a live resource does not end, so
# a generated request could hang; test_event_streams_answer_unknown_ids_and_strangers_quickly
# covers them.
EXCLUDED: dict[str, str] = {}
# The statuses each operation answered, per generation mode: proof the fuzzer got past the door.
STATUSES: dict[tuple[str, GenerationMode], set[int]] = {}
Check = Callable[[Case, Any, GenerationMode], None]


def is_event_stream(operation: APIOperation) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any("text/event-stream" in (r.get("content") or {}) for r in responses.values())


def fuzzed_operations(app: FastAPI) -> list[APIOperation]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the OpenAPI document lists no operations"
    # Revoking keys last keeps the fuzzing key usable for longer.
    return sorted((op for op in operations if op.label not in EXCLUDED and not is_event_stream(op)),
                  key=lambda op: (op.method.upper() == "DELETE" and "/keys" in op.path, op.path))


def send(client: TestClient, case: Case, headers: dict[str, str]) -> Any:
    """The case sent through the app's TestClient (the lifespan runs once, the Host is ours). The
    request is encoded as schemathesis encodes it (requests' rules: JSON, forms, multipart)."""
    kwargs = case.as_transport_kwargs(base_url=BASE, headers=headers)
    kwargs.pop("timeout", None)
    prepared = requests.Request(**kwargs).prepare()
    return client.request(prepared.method or "GET", prepared.url or BASE, headers=dict(prepared.headers),
                          content=prepared.body)


def fuzz(operation: APIOperation, client: TestClient, headers: Callable[[], dict[str, str]],
         examples: int, extra: Check | None = None,
         path_parameters: dict[str, str] | None = None) -> list[str]:
    """Fuzz one operation with valid and invalid data; returns the failures as text."""
    failures: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            _fuzz_mode(operation, mode, client, headers(), examples, extra, path_parameters)
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request generated"
            # Nothing in this operation can be made invalid (e.g. one free-form path parameter).
        except Exception as exc:  # collected: one failing operation must not hide the others
            failures.append(f"{operation.label} ({mode.value}): {_describe(exc)}")
    return failures


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _fuzz_mode(operation: APIOperation, mode: GenerationMode, client: TestClient,
               sent: dict[str, str], examples: int, extra: Check | None,
               path_parameters: dict[str, str] | None = None) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    def run(case: Case) -> None:
        response = send(client, case, sent)
        STATUSES.setdefault((operation.label, mode), set()).add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
            if extra is not None:
                extra(case, response, mode)
        except Exception as exc:  # schemathesis' failures, and ours
            raise AssertionError(f"{case.as_curl_command(headers=sent)}\n-> {response.status_code} "
                                 f"{response.text[:300]}\n{exc}") from None

    run()


@pytest.fixture
def fuzz_env(corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Fuzzed ingest requests must not index the machine, nor wait on a git server.
    allowed = tmp_path / "ingest-root"
    (allowed / "docs").mkdir(parents=True)
    (allowed / "docs" / "honey.md").write_text("# Honey\n\nBees make honey from nectar.\n")
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", json.dumps([str(allowed)]))
    monkeypatch.setenv("CORRAL_GIT_TIMEOUT_S", "5")
    monkeypatch.setenv("CORRAL_WEBHOOK_ALLOWED_HOSTS", '["127.0.0.1"]')
    clear_caches()
    return corral_env


@pytest.fixture
def api(fuzz_env: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    app = create_app()
    with TestClient(app, base_url=BASE) as client:
        yield app, client


@pytest.fixture
def closed_api(fuzz_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FastAPI, TestClient]]:
    monkeypatch.setenv("CORRAL_AUTH", "required")
    clear_caches()
    app = create_app()
    with TestClient(app, base_url=BASE) as client:
        yield app, client


def _naive_timestamps(value: Any, where: str = "") -> list[str]:
    """Timestamp fields (``*_at``, ``at``) in ``value`` that lack a time zone."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if (k == "at" or k.endswith("_at")) and isinstance(v, str):
                try:
                    if datetime.fromisoformat(v).tzinfo is None:
                        found.append(f"{where}.{k}={v}")
                except ValueError:
                    found.append(f"{where}.{k}={v} (not ISO 8601)")
            found += _naive_timestamps(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _naive_timestamps(v, f"{where}[{i}]")
    return found


def timestamps_carry_a_zone(_case: Case, response: Any, _mode: GenerationMode) -> None:
    if response.content and response.headers.get("content-type", "").startswith("application/json"):
        naive = _naive_timestamps(response.json())
        assert not naive, f"timestamps without a time zone: {naive}"


def test_fuzz_with_an_admin_key(api: tuple[FastAPI, TestClient]) -> None:
    app, client = api
    failures: list[str] = []
    for operation in fuzzed_operations(app):
        key = issue_key("admin", name=f"fuzz {operation.label}"[:120])  # fresh: earlier ops may revoke

        failures += fuzz(operation, client, lambda key=key: bearer(key), MAX_EXAMPLES,  # type: ignore[misc]
                         timestamps_carry_a_zone)
    assert not failures, "\n\n".join(failures)
    # The key worked: every plain GET (a list, the workspace) answered 2xx to valid requests.
    for operation in fuzzed_operations(app):
        if operation.method.upper() == "GET" and "{" not in operation.path:
            seen = STATUSES[(operation.label, GenerationMode.POSITIVE)]
            assert any(200 <= s < 300 for s in seen), (operation.label, seen)


def _existing(client: TestClient, admin: dict[str, str], root: Path) -> dict[str, str]:
    """Real resources to fuzz against, by the path segment and parameter that name them."""
    accepted = client.post("/v1/corpora/docs/ingest", json={"path": str(root / "docs")}, headers=admin)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    client.headers.update(admin)
    try:
        assert wait_for_job(client, job_id)["state"] == "succeeded"
    finally:
        client.headers.pop("Authorization", None)
    found = {"corpora/{name}": "docs", "jobs/{job_id}": job_id}
    run = client.post("/v1/corpora/docs/runs", json={"question": "What do bees make?"}, headers=admin)
    if run.status_code == 202:
        found["runs/{run_id}"] = run.json()["run_id"]
    key = client.post("/v1/keys", json={"name": "to be fuzzed", "scopes": ["read"]}, headers=admin)
    found["keys/{key_id}"] = str(key.json()["id"])
    hook = client.post("/v1/webhooks", headers=admin,
                       json={"url": "http://127.0.0.1:9/hook", "events": ["job.finished"]})
    if hook.status_code == 201:
        found["webhooks/{webhook_id}"] = str(hook.json()["id"])
    return found


def test_fuzz_existing_resources(api: tuple[FastAPI, TestClient], fuzz_env: Path) -> None:
    """Bodies and queries fuzzed against resources that exist (a corpus, a job, a run, a key, a
    webhook), so the routes get past their lookups; operations naming something else are covered
    by the random-path fuzzing above."""
    app, client = api
    admin = bearer(issue_key("admin", name="fuzz existing"))
    known = _existing(client, admin, fuzz_env.parent / "ingest-root")
    failures: list[str] = []
    fuzzed = 0
    for operation in fuzzed_operations(app):
        if operation.path.endswith("/events"):
            continue  # a stream of a live resource; see test_event_streams_answer_...
        names = [p.name for p in operation.path_parameters]
        keys = {n: _param_key(operation.path, n) for n in names}
        if not names or not all(k in known for k in keys.values()):
            continue
        fuzzed += 1
        failures += fuzz(operation, client, lambda: admin, 10, timestamps_carry_a_zone,
                         path_parameters={n: known[k] for n, k in keys.items()})
    assert not failures, "\n\n".join(failures)
    assert fuzzed >= 5, "too few operations matched the existing resources"


def _param_key(path: str, param: str) -> str:
    parts = path.strip("/").split("/")
    i = parts.index("{" + param + "}")
    return f"{parts[i - 1] if i else ''}/{{{param}}}"


def test_fuzz_without_a_key(closed_api: tuple[FastAPI, TestClient]) -> None:
    app, client = closed_api

    def refused(case: Case, response: Any, mode: GenerationMode) -> None:
        if case.operation.path in PUBLIC_PATHS:
            return
        # FastAPI reads the body before the dependencies run: a malformed one is refused as such
        # (revealing nothing but the public schema); anything else is a 401.
        malformed = mode is GenerationMode.NEGATIVE and response.status_code in (400, 413, 422)
        if not malformed:
            assert response.status_code == 401, "a request without a key got past authentication"
            assert response.headers["www-authenticate"].startswith("Bearer")

    failures: list[str] = []
    for operation in fuzzed_operations(app):
        failures += fuzz(operation, client, dict, 10, refused)
    assert not failures, "\n\n".join(failures)


def test_event_streams_answer_unknown_ids_and_strangers_quickly(
    closed_api: tuple[FastAPI, TestClient],
) -> None:
    """The operations the fuzzer skips because they stream (and every ``…/events`` route, declared
    as a stream or not): an unknown id is a JSON 404 at once, no key a 401."""
    app, client = closed_api
    schema = schemathesis.openapi.from_dict(app.openapi())
    streams = [op for op in (r.ok() for r in schema.get_all_operations())
               if is_event_stream(op) or op.path.endswith("/events")]
    key = issue_key("admin")
    for op in streams:
        url = op.path
        for param in op.path_parameters:
            url = url.replace("{" + param.name + "}", "424242")
        anonymous = client.request(op.method.upper(), url)
        assert anonymous.status_code == 401, (op.label, anonymous.text)
        unknown = client.request(op.method.upper(), url, headers=bearer(key))
        assert unknown.status_code == 404, (op.label, unknown.text)
        assert unknown.json()["error"]["type"] == "not_found"


def test_every_path_answers_405_with_allow_for_other_methods(api: tuple[FastAPI, TestClient]) -> None:
    app, client = api
    key = issue_key("admin")
    paths: dict[str, set[str]] = {}
    for path, item in app.openapi()["paths"].items():
        paths[path] = {m.upper() for m in item if m in ("get", "put", "post", "delete", "patch")}
    for path, methods in paths.items():
        concrete = path
        while "{" in concrete:
            start = concrete.index("{")
            concrete = concrete[:start] + "x1" + concrete[concrete.index("}", start) + 1:]
        for method in {"GET", "PUT", "POST", "DELETE", "PATCH"} - methods:
            r = client.request(method, concrete, headers=bearer(key))
            if r.status_code == 404 and any(p != path and _same_shape(p, concrete) for p in paths):
                continue  # another route's path parameter took it (e.g. /jobs/{id} vs /jobs/x1)
            assert r.status_code == 405, (method, concrete, r.status_code, r.text)
            assert set(r.headers["allow"].split(", ")) >= methods, (method, concrete, r.headers)
            assert r.json()["error"]["type"] == "method_not_allowed"


def _same_shape(template: str, concrete: str) -> bool:
    a, b = template.strip("/").split("/"), concrete.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))
