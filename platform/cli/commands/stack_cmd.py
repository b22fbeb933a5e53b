"""``corral stack up`` and ``corral stack procfile``: the server-mode stack on a host without Docker."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from corral.core.config import get_settings
from corral.core.db import migrate
from corral.platform.stack.processes import StackSpec, plan_stack, procfile

_Ingest = Annotated[int, typer.Option(help="Ingest worker processes.")]
_Agent = Annotated[int, typer.Option(help="Agent worker processes (0: asks are not answered).")]
_Inference = Annotated[bool, typer.Option(help="Run `corral inference serve` too (off when the "
                                          "agents answer through another OpenAI-compatible server).")]
_Metrics = Annotated[int | None, typer.Option(help="First worker's Prometheus port; the next count up.")]


def _spec(host: str | None, port: int | None, ingest_workers: int, agent_workers: int,
          inference: bool, metrics_port: int | None) -> StackSpec:
    settings = get_settings()
    return StackSpec(api_host=host or settings.api_host, api_port=port or settings.api_port,
                     ingest_workers=ingest_workers, agent_workers=agent_workers,
                     inference=inference, metrics_port=metrics_port)


def up(
    host: Annotated[str | None, typer.Option(help="The API's interface.")] = None,
    port: Annotated[int | None, typer.Option(help="The API's port.")] = None,
    ingest_workers: _Ingest = 1,
    agent_workers: _Agent = 1,
    inference: _Inference = True,
    metrics_port: _Metrics = None,
) -> None:
    """Migrate the database, then run the API, the workers and the inference service against the
    configured PostgreSQL, Redis (and Chroma) until Ctrl-C or SIGTERM; when one stops, all stop."""
    from honcho.manager import Manager

    processes = plan_stack(get_settings(), _spec(host, port, ingest_workers, agent_workers,
                                                 inference, metrics_port))
    migrate.upgrade()
    typer.echo(f"database at {migrate.current_revision()}")
    manager = Manager()
    # The processes run this installation's `corral`, whatever PATH says (a virtualenv not activated).
    here = str(Path(sys.executable).parent)
    path = os.pathsep.join([here, os.environ.get("PATH", "")])
    for p in processes:
        manager.add_process(p.name, p.command, env={**os.environ, "PATH": path, **p.env})
    manager.loop()
    sys.exit(manager.returncode or 0)


def procfile_cmd(
    host: Annotated[str | None, typer.Option(help="The API's interface.")] = None,
    port: Annotated[int | None, typer.Option(help="The API's port.")] = None,
    ingest_workers: _Ingest = 1,
    agent_workers: _Agent = 1,
    inference: _Inference = True,
    metrics_port: _Metrics = None,
) -> None:
    """Print the stack's processes as a Procfile (for honcho, foreman or a platform that reads one);
    run `corral db upgrade` before starting it."""
    typer.echo(procfile(plan_stack(get_settings(), _spec(host, port, ingest_workers, agent_workers,
                                                         inference, metrics_port))), nl=False)
