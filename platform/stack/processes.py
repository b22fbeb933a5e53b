"""The processes of a server-mode stack, once: ``corral stack up`` runs them under honcho, ``corral
stack procfile`` prints them as a Procfile (the repository's ``Procfile`` is that output), and they
are docker-compose.yml's services but for the databases, which a host without Docker already runs.

Honcho (a Python port of Foreman) starts them, prefixes their output with their names, and stops
them all when one stops or on Ctrl-C / SIGTERM: a process manager for a developer's machine or a
single host's systemd unit (``ExecStart=corral stack up``), where the unit restarts the whole stack.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from corral.core.config import Mode, Settings
from corral.core.errors import ConfigurationError

__all__ = ["StackProcess", "StackSpec", "plan_stack", "procfile"]


@dataclass(frozen=True, slots=True)
class StackProcess:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's own environment

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True, slots=True)
class StackSpec:
    """What to run: ``ingest_workers`` and ``agent_workers`` worker processes; the inference
    service unless the agents answer through a server of someone else's (``inference=False``);
    ``metrics_port``: the first worker's metrics port, the next ones counting up (None: off)."""

    api_host: str = "127.0.0.1"
    api_port: int = 8321
    ingest_workers: int = 1
    agent_workers: int = 1
    inference: bool = True
    metrics_port: int | None = None


def plan_stack(settings: Settings, spec: StackSpec) -> list[StackProcess]:
    """The processes for ``spec``; a ConfigurationError when the settings are not server mode's."""
    missing = [name for name, value in (("CORRAL_DATABASE_URL", settings.database_url),
                                        ("CORRAL_REDIS_URL", settings.redis_url)) if not value]
    if settings.mode is not Mode.SERVER or missing:
        raise ConfigurationError("`corral stack up` runs server mode: set CORRAL_MODE=server, "
                                 "CORRAL_DATABASE_URL and CORRAL_REDIS_URL (missing: "
                                 f"{', '.join(missing) or 'CORRAL_MODE=server'})")
    if spec.ingest_workers < 1 or spec.agent_workers < 0:
        raise ConfigurationError("a stack needs at least one ingest worker (agent workers: 0 or more)")
    processes = [StackProcess("api", ["corral", "serve", "--host", spec.api_host,
                                      "--port", str(spec.api_port)])]
    port = spec.metrics_port
    for queue, count, label in ((settings.ingest_queue, spec.ingest_workers, "worker"),
                                (settings.agent_queue, spec.agent_workers, "agent")):
        for i in range(count):
            env = {}
            if port is not None:
                env["CORRAL_WORKER_METRICS_PORT"] = str(port)
                port += 1
            name = label if count == 1 else f"{label}.{i + 1}"
            processes.append(StackProcess(name, ["corral", "worker", "-Q", queue], env))
    if spec.inference:
        processes.append(StackProcess("inference", ["corral", "inference", "serve"]))
    return processes


def procfile(processes: list[StackProcess]) -> str:
    """``processes`` as a Procfile (``name: command``), per-process settings as env prefixes."""
    lines = []
    for p in processes:
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in p.env.items())
        lines.append(f"{p.name}: {prefix}{p.command}")
    return "\n".join(lines) + "\n"
