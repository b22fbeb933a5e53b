"""A git repository: a local working tree, a local bare repository, or a clone URL.

Choice: the ``git`` CLI through :mod:`subprocess` rather than dulwich or GitPython. ``git ls-files``
is the one exact answer to "which files does .gitignore keep", shallow clones and protocol
restrictions (``GIT_ALLOW_PROTOCOL``) are first-class there, and a timeout kills a hung transfer.

Allowed: ``http(s)://``, ``ssh://``, scp-like ``user@host:path``, and ``file://`` URLs or local paths
under ``CORRAL_INGEST_ALLOWED_ROOTS`` (any local path in development when no roots are set).
Refused with :class:`InvalidInputError`: ``git://``, transport helpers (``ext::``, ``fd::``), any
other scheme, and anything that looks like a command-line option. Remote hosts must have public
addresses unless listed in ``CORRAL_GIT_ALLOWED_HOSTS`` (:mod:`corral.ingestion.sources.gitnet`),
checked right before every clone and fetch; a credential travels beside the URL, never in it
(:mod:`corral.ingestion.sources.credentials`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

from corral.core.db import DocumentStatus, SourceKind
from corral.core.errors import IngestError, InvalidInputError
from corral.ingestion.sources.base import SourceDescription, SourceDocument, SourceItem, SourceProblem
from corral.ingestion.sources.credentials import auth_header
from corral.ingestion.sources.folder import batched
from corral.ingestion.sources.gitcli import GIT, GITIGNORED, git_env, gitignored, is_ignored
from corral.ingestion.sources.gitnet import check_remote, unreachable
from corral.ingestion.sources.policy import check_local_path
from corral.ingestion.sources.walk import hidden_file

__all__ = ["GitSource", "GitTarget", "parse_git_uri"]

log = logging.getLogger(__name__)

_REMOTE_SCHEMES = frozenset({"http", "https", "ssh"})
_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
# user@host:path the way git reads it: a colon before any slash, and no "://".
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~+-]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!/?/)[^:].*$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/+-]{1,200}$")
_MAX_URI = 2048


@dataclass(frozen=True, slots=True)
class GitTarget:
    """A checked git uri: either a ``remote`` URL to clone or a ``local`` path."""

    remote: str | None = None
    local: Path | None = None


def parse_git_uri(uri: str, allowed_roots: Sequence[Path], *, development: bool) -> GitTarget:
    """Classify ``uri`` and refuse what must never reach ``git`` (see the module docstring)."""
    uri = uri.strip()
    if not uri:
        raise InvalidInputError("the git URL is empty")
    if len(uri) > _MAX_URI or any(ord(c) < 32 or ord(c) == 127 for c in uri):
        raise InvalidInputError("the git URL is too long or contains control characters")
    if uri.startswith("-"):
        raise InvalidInputError(f"the git URL must not start with '-': {uri[:200]!r}")
    if _HELPER.match(uri):
        helper = uri.split("::", 1)[0]
        raise InvalidInputError(
            f"git transport helpers ({helper}::) are not allowed; use http(s)://, ssh://, "
            "user@host:path or a local path"
        )
    if "://" in uri:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise InvalidInputError(f"file:// URLs must name a local path: {uri[:200]!r}")
            path = Path(unquote(parts.path))
            return GitTarget(local=check_local_path(path, allowed_roots, development=development))
        if scheme not in _REMOTE_SCHEMES:
            raise InvalidInputError(
                f"git URL scheme {scheme!r} is not allowed; use http(s)://, ssh://, "
                "user@host:path, or file:// under the allowed ingest roots"
            )
        if not parts.hostname:
            raise InvalidInputError(f"the git URL has no host: {_redact(uri)!r}")
        return GitTarget(remote=uri)
    if _SCP_LIKE.match(uri) and not Path(uri).exists():
        return GitTarget(remote=uri)
    return GitTarget(local=check_local_path(Path(uri), allowed_roots, development=development))


class GitSource:
    """The files git tracks in a repository (plus, in a local working tree, untracked files that
    .gitignore does not exclude), read from the working tree; paths start with the repo's name.

    Remote URLs and bare repositories are cloned shallowly (``--depth 1``) into ``cache_dir/git``
    and refreshed by a shallow fetch when ``refresh`` is true; with ``refresh=False`` an existing
    checkout is used as it is (what a worker given a batch of paths wants: the listing's commit).
    """

    def __init__(
        self,
        uri: str,
        *,
        cache_dir: Path,
        allowed_roots: Sequence[Path] = (),
        development: bool = True,
        branch: str | None = None,
        timeout_s: float = 600.0,
        refresh: bool = True,
        credential: str | None = None,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        if branch is not None and (not _BRANCH.match(branch) or branch.startswith("-")):
            raise InvalidInputError(f"not a valid branch name: {branch[:200]!r}")
        self._uri, self._branch, self._timeout = uri.strip(), branch, timeout_s
        self._credential, self._allowed_hosts = credential, tuple(allowed_hosts)
        target = parse_git_uri(uri, allowed_roots, development=development)
        if target.local is not None:
            local = target.local
            if not local.is_dir():
                raise InvalidInputError(f"not a folder: {uri[:200]}")
            inside = self._git(local, "rev-parse", "--is-inside-work-tree", check=False)
            if inside == "true":
                self.root, self.name, self._worktree = local, local.name, True
            else:
                bare = self._git(local, "rev-parse", "--is-bare-repository", check=False)
                if bare != "true":
                    raise InvalidInputError(f"not a git repository: {uri[:200]}")
                self.root = self._checkout(local.as_uri(), cache_dir, refresh, allow_file=True)
                self.name, self._worktree = _repo_name(local.name), False
        else:
            assert target.remote is not None
            self.root = self._checkout(target.remote, cache_dir, refresh, allow_file=False)
            self.name, self._worktree = _repo_name(urlsplit(target.remote).path or target.remote), False
        head = self._git(self.root, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
        self.commit: str | None = head if re.fullmatch(r"[0-9a-f]{40,64}", head) else None

    @cached_property
    def _gitignored(self) -> frozenset[str]:
        return gitignored(self.root, self._timeout) if self._worktree else frozenset()

    # -- Source protocol ---------------------------------------------------------------------

    def describe(self) -> SourceDescription:
        options = {"branch": self._branch} if self._branch else {}
        return SourceDescription(SourceKind.GIT, _redact(self._uri), self.commit, options)

    def iter_batches(self, batch_size: int) -> Iterator[list[SourceItem]]:
        return batched(self._items(), batch_size)

    def open_document(self, path: str) -> SourceItem:
        rel = PurePosixPath(path)
        parts = rel.parts
        if not parts or parts[0] != self.name or ".." in parts or rel.is_absolute() or "\x00" in path:
            return SourceProblem(path, "path is not inside this source", DocumentStatus.FAILED)
        if is_ignored("/".join(parts[1:]), self._gitignored):
            return SourceProblem(path, GITIGNORED)
        hidden = hidden_file(parts[-1]) if len(parts) > 1 else None
        if hidden is not None:
            return SourceProblem(path, hidden)
        item = self._item("/".join(parts[1:]), self.root.resolve())
        if item is None:
            return SourceProblem(path, "file no longer exists in the source", DocumentStatus.FAILED)
        return item

    # -- listing -----------------------------------------------------------------------------

    def _items(self) -> Iterator[SourceItem]:
        args = ["ls-files", "-z", "--cached"]
        if self._worktree:
            args += ["--others", "--exclude-standard"]
        out = self._run(self.root, *args)
        names = {n for n in out.split(b"\0") if n}
        # Untracked paths .gitignore keeps out are reported, not silently dropped.
        ignored = {n.rstrip("/").encode("utf-8", "surrogateescape") for n in self._gitignored} - names
        real_root = self.root.resolve()
        for raw in sorted(names | ignored):
            if raw in ignored:
                yield SourceProblem(f"{self.name}/{raw.decode('utf-8', 'replace')}", GITIGNORED)
                continue
            try:
                rel = raw.decode("utf-8")
            except UnicodeDecodeError:
                shown = raw.decode("utf-8", "replace")
                yield SourceProblem(f"{self.name}/{shown}", "file name is not valid UTF-8",
                                    DocumentStatus.FAILED)
                continue
            hidden = hidden_file(rel.rsplit("/", 1)[-1])
            if hidden is not None:
                yield SourceProblem(f"{self.name}/{rel}", hidden)
                continue
            item = self._item(rel, real_root)
            if item is not None:
                yield item

    def _item(self, rel: str, real_root: Path) -> SourceItem | None:
        """The listed file ``rel`` (relative to the root); ``None`` when it no longer exists."""
        path = f"{self.name}/{rel}"
        local = self.root / rel
        if not os.path.lexists(local):
            return None  # deleted in the working tree but not yet in the index: gone
        try:
            real = local.resolve(strict=True)
        except (OSError, RuntimeError):
            return SourceProblem(path, "broken or looping symlink")
        if not real.is_relative_to(real_root):
            return SourceProblem(path, "symlink points outside the repository")
        if local.is_dir():
            if local.is_symlink():
                return SourceProblem(path, "symlinked folder is not followed")
            return SourceProblem(path, "git submodule is not indexed")
        try:
            return SourceDocument.from_file(local, path)
        except OSError as exc:
            return SourceProblem(path, f"cannot read: {exc.strerror or exc}", DocumentStatus.FAILED)

    # -- cloning -----------------------------------------------------------------------------

    def _checkout(self, url: str, cache_dir: Path, refresh: bool, *, allow_file: bool) -> Path:
        key = hashlib.sha256(f"{url}\0{self._branch or ''}".encode()).hexdigest()[:24]
        base = cache_dir / "git"
        base.mkdir(parents=True, exist_ok=True)
        dest = base / key
        with _locked(base / f"{key}.lock"):
            if (dest / ".git").exists():
                if refresh:
                    ref = self._branch or "HEAD"
                    self._remote(url, allow_file, dest, "fetch", "--depth", "1", "--no-tags",
                                 "origin", "--", ref)
                    self._run(dest, "checkout", "--force", "--detach", "FETCH_HEAD",
                              env=git_env(allow_file))
                return dest
            tmp = base / f"{key}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            args = ["clone", "--depth", "1", "--no-tags", "--single-branch"]
            if self._branch:
                args += ["--branch", self._branch]
            try:
                self._remote(url, allow_file, base, *args, "--", url, str(tmp))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            tmp.rename(dest)
            return dest

    def _remote(self, url: str, allow_file: bool, cwd: Path, *args: str) -> None:
        """Run a git command that talks to ``url``: a remote host is checked (public addresses,
        or listed) right before, and pinned to the addresses checked; the credential goes in a
        header through the environment; every failure to reach it reads the same."""
        env = git_env(allow_file)
        if allow_file:
            self._run(cwd, *args, env=env)
            return
        checked = check_remote(url, _redact(self._uri), self._allowed_hosts, must_resolve=True)
        options = ["-c", "http.followRedirects=false"]
        if checked is not None and checked[1] and checked[0].scheme in ("http", "https"):
            remote, addresses = checked
            pinned = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
            options += ["-c", f"http.curloptResolve={remote.host}:{remote.port}:{pinned}"]
        if self._credential is not None:
            count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
            env.update({"GIT_CONFIG_COUNT": str(count + 1),
                        f"GIT_CONFIG_KEY_{count}": "http.extraHeader",
                        f"GIT_CONFIG_VALUE_{count}": auth_header(self._credential)})
        try:
            self._run(cwd, *args, env=env, options=options)
        except IngestError as exc:
            log.warning("git %s failed: %s", args[0], exc)
            raise IngestError(unreachable(_redact(self._uri))) from None

    def _git(self, cwd: Path, *args: str, check: bool = True) -> str:
        try:
            return self._run(cwd, *args, env=git_env(False)).decode("utf-8", "replace").strip()
        except IngestError:
            if check:
                raise
            return ""

    def _run(self, cwd: Path, *args: str, env: dict[str, str] | None = None,
             options: Sequence[str] = ()) -> bytes:
        cmd = [*GIT, *options, *args]
        try:
            done = subprocess.run(
                cmd, cwd=cwd, env=env or git_env(False), capture_output=True, check=False,
                timeout=self._timeout, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise IngestError(
                f"git {args[0]} of {_redact(self._uri)} timed out after {self._timeout:.0f} s "
                "(CORRAL_GIT_TIMEOUT_S)"
            ) from None
        except OSError as exc:
            raise IngestError(f"cannot run git: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()
            tail = _redact(" / ".join(err[-3:]))[:500] or f"exit status {done.returncode}"
            raise IngestError(f"git {args[0]} of {_redact(self._uri)} failed: {tail}")
        return done.stdout


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes: two workers never clone into the same folder at once."""
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _repo_name(path: str) -> str:
    last = path.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", last).strip(".")
    return name or "repo"


def _redact(text: str) -> str:
    """``text`` with any password in a URL replaced, for messages and the stored uri."""
    def one(match: re.Match[str]) -> str:
        parts = urlsplit(match.group(0))
        if "@" not in parts.netloc or ":" not in parts.netloc.rsplit("@", 1)[0]:
            return match.group(0)
        user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{parts.netloc.rsplit('@', 1)[1]}"))

    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+", one, text)
