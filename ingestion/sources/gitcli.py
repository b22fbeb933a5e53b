"""Running the ``git`` CLI on folders we do not trust: no hooks, no fsmonitor command, no system
config, never a password prompt, only the transports allowed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["GIT", "GITIGNORED", "git_env", "gitignored", "is_ignored"]

GITIGNORED = "ignored by .gitignore"  # the reason the report shows

# The command and options every call starts with: a repository's own config must not run commands.
GIT = ("git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


def git_env(allow_file: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "GIT_TERMINAL_PROMPT": "0",  # never wait for a password nobody will type
        "GIT_ALLOW_PROTOCOL": "http:https:ssh" + (":file" if allow_file else ""),
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    })
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def gitignored(folder: Path, timeout_s: float = 120.0) -> frozenset[str]:
    """What ``.gitignore`` (with ``.git/info/exclude`` and the user's excludes) keeps out of
    ``folder``: untracked paths relative to it, a wholly ignored folder once with a trailing ``/``.

    Empty when ``folder`` is not in a git work tree, when git is missing, and when ``folder`` is
    itself ignored (whoever names an ignored folder wants it read).
    """
    try:
        done = subprocess.run(
            [*GIT, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"],
            cwd=folder, env=git_env(), capture_output=True, check=False, timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    if done.returncode != 0:
        return frozenset()
    names = frozenset(n.decode("utf-8", "surrogateescape") for n in done.stdout.split(b"\0") if n)
    return frozenset() if "./" in names else names


def is_ignored(rel: str, ignored: frozenset[str]) -> bool:
    """Whether ``rel`` (a POSIX path under the folder :func:`gitignored` listed) or a folder above
    it is ignored."""
    if rel in ignored or f"{rel}/" in ignored:
        return True
    parts = rel.split("/")
    return any("/".join(parts[:i]) + "/" in ignored for i in range(1, len(parts)))
