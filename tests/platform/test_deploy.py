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
