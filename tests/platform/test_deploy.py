"""docker-compose.yml cannot run here (no Docker engine), so check that it says what it should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.main import get_command

from corral.platform.cli.app import app

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_compose_has_the_server_mode_services() -> None:
    services = _compose()["services"]
    assert {"api", "worker", "postgres", "redis", "chroma", "migrate"} <= set(services)
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        assert env["CORRAL_MODE"] == "server"
        assert env["CORRAL_DATABASE_URL"].startswith("postgresql://")
        assert env["CORRAL_REDIS_URL"] == "redis://redis:6379/0"
        assert env["CORRAL_CHROMA_HOST"] == "chroma"
        assert "CORRAL_SECRET_KEY" in env and ":?" in env["CORRAL_SECRET_KEY"]


def test_compose_commands_are_real_cli_commands() -> None:
    cli = get_command(app)
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if not command or command[0] != "corral":
            continue
        group: Any = cli
        for word in command[1:]:
            if word.startswith("-"):
                break
            assert word in group.commands, f"{name}: `corral {word}` does not exist"
            group = group.commands[word]


def test_dockerfile_pins_torch_first_and_ships_every_portion() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.index("torch==2.13.0") < text.index("-c constraints.txt")
    for folder in ("core", "inference", "ingestion", "agents", "platform", "migrations"):
        assert f"COPY {folder} {folder}" in text


# The Compose specification's own JSON schema, as check-jsonschema bundles it (nothing downloaded).
def test_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    import subprocess
    import sys

    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec",
                             str(REPO / "docker-compose.yml")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yml"  # the checker does refuse: a misspelt key
    broken.write_text("services:\n  api:\n    image: x\n    comand: [corral, serve]\n")
    refused = subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(broken)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "comand" in refused.stdout + refused.stderr


def _options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


def _check_corral_argv(where: str, argv: list[str]) -> None:
    """``argv`` (``corral …``) names a real command, and every option it passes exists there."""
    group: Any = get_command(app)
    words = iter(argv[1:])
    for word in words:
        if word.startswith("-"):
            assert word in _options(group), f"{where}: `{' '.join(argv)}`: no option {word}"
            continue
        commands = getattr(group, "commands", None)
        if commands is None:
            continue  # an option's value or an argument
        assert word in commands, f"{where}: `corral {word}` does not exist"
        group = commands[word]


def _corral_env_names(env: dict[str, Any]) -> set[str]:
    return {k for k in env if k.startswith("CORRAL_")}


def test_every_command_option_and_setting_the_stack_names_exists() -> None:
    from corral.core.config import Settings

    known = {f"CORRAL_{name.upper()}" for name in Settings.model_fields}
    services = _compose()["services"]
    named: set[str] = set()
    for name, service in services.items():
        command = service.get("command")
        if command and command[0] == "corral":
            _check_corral_argv(name, command)
        named |= _corral_env_names(service.get("environment") or {})
    env_example = [line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#")]
    named |= {n for n in env_example if n.startswith("CORRAL_")}
    assert named, "the stack names no setting"
    assert named <= known, f"settings that do not exist: {sorted(named - known)}"
    # The variables compose interpolates from .env are all in the example env file.
    text = (REPO / "docker-compose.yml").read_text()
    import re

    interpolated = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert interpolated <= set(env_example), sorted(interpolated - set(env_example))
    for line in (REPO / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            name, command = line.split(": ", 1)
            words = command.split()
            while "=" in words[0]:
                assert words[0].split("=")[0] in known, line
                words = words[1:]
            _check_corral_argv(f"Procfile {name}", words)


def test_each_service_has_a_health_check_resource_limits_and_its_volumes() -> None:
    services = _compose()["services"]
    assert {"api", "worker", "agent-worker", "inference", "migrate", "postgres", "redis",
            "chroma"} <= set(services)
    for name, service in services.items():
        if name != "migrate":  # a one-shot: it completes, or the stack does not start
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service["deploy"]["resources"]["limits"]["memory"], f"{name} has no memory limit"
    assert services["migrate"]["command"] == ["corral", "db", "upgrade"]
    for name in ("api", "worker", "agent-worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert "corral-data:/var/lib/corral" in services[name]["volumes"]  # uploads shared
    assert "corral-prefix-cache:/var/lib/corral" in services["inference"]["volumes"]
    assert "/readyz" in " ".join(services["inference"]["healthcheck"]["test"])
    for name in ("worker", "agent-worker"):
        assert services[name]["environment"]["CORRAL_WORKER_METRICS_PORT"] == "9101"
        assert "9101/metrics" in " ".join(services[name]["healthcheck"]["test"])


def test_the_procfile_is_what_corral_stack_procfile_prints(monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from corral.core.config import get_settings

    for key, value in {"CORRAL_MODE": "server", "CORRAL_DATABASE_URL": "postgresql://corral@db/corral",
                       "CORRAL_REDIS_URL": "redis://redis:6379/0"}.items():
        monkeypatch.setenv(key, value)
    for key in ("CORRAL_INGEST_QUEUE", "CORRAL_AGENT_QUEUE", "CORRAL_API_HOST", "CORRAL_API_PORT"):
        monkeypatch.delenv(key, raising=False)
    get_settings.cache_clear()
    try:
        printed = CliRunner().invoke(app, ["stack", "procfile", "--metrics-port", "9101"])
        assert printed.exit_code == 0, printed.output
        body = [x for x in (REPO / "Procfile").read_text().splitlines() if not x.startswith("#")]
        assert printed.output.splitlines() == body
        two = CliRunner().invoke(app, ["stack", "procfile", "--ingest-workers", "2", "--no-inference"])
        assert "worker.2: corral worker -Q ingest" in two.output and "inference" not in two.output
        monkeypatch.setenv("CORRAL_MODE", "embedded")
        get_settings.cache_clear()
        refused = CliRunner().invoke(app, ["stack", "up"])
        assert refused.exit_code != 0 and "CORRAL_MODE=server" in refused.output
    finally:
        get_settings.cache_clear()
