"""Git sources cannot be turned on the server's own network (SSRF, DNS rebinding), every failure to
reach a repository reads the same, and credentials travel beside the URL, sealed."""

from __future__ import annotations

import base64
import http.server
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.core.errors import IngestError, PermissionDeniedError
from corral.ingestion.sources import GitSource, GitSpec, check_spec, gitnet, source_spec
from corral.ingestion.sources import git as git_module
from corral.ingestion.sources.credentials import seal, split_credential, unseal

PUBLIC = "93.184.215.14"


def _resolving_to(monkeypatch: pytest.MonkeyPatch, *answers: list[str] | Exception) -> list[str]:
    """Make host lookups answer ``answers`` in turn (the last one repeats); the hosts asked."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        answer = answers[min(len(asked), len(answers) - 1)]
        asked.append(host)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(gitnet, "_resolve", resolve)
    return asked


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.0.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::",
    "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1",
    "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
])
def test_non_public_addresses_are_refused(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    _resolving_to(monkeypatch, [PUBLIC, address])  # one bad address among good ones is enough
    with pytest.raises(PermissionDeniedError, match="CORRAL_GIT_ALLOWED_HOSTS"):
        gitnet.check_remote("https://git.example.org/r.git", "x", [], must_resolve=True)


def test_public_hosts_pass_and_listed_hosts_are_not_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _resolving_to(monkeypatch, [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    remote, addresses = gitnet.check_remote("https://git.example.org:8443/r.git", "x", [],
                                            must_resolve=True) or (None, [])
    assert remote is not None and (remote.host, remote.port) == ("git.example.org", 8443)
    assert addresses == [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    assert gitnet.check_remote("http://Internal.Corp/r.git", "x", ["internal.corp"],
                               must_resolve=True) is not None
    assert gitnet.check_remote("git@gitlab.internal:o/r.git", "x", ["GITLAB.INTERNAL"],
                               must_resolve=True) is not None
    assert asked == ["git.example.org"]
    assert gitnet.check_remote("/srv/repo", "x", [], must_resolve=True) is None  # local: roots policy


def test_a_name_that_resolves_inside_after_submit_is_refused_before_the_fetch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _resolving_to(monkeypatch, [PUBLIC], ["127.0.0.1"])  # DNS rebinding
    spec = source_spec(git="https://rebind.example.org/r.git")
    check_spec(spec, [], development=False)  # at submit time: public
    ran: list[Any] = []
    monkeypatch.setattr(git_module.subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(PermissionDeniedError, match="loopback"):
        GitSource(spec.url, cache_dir=tmp_path)
    assert ran == []  # git never ran


def test_git_connects_only_to_the_addresses_checked_and_gets_the_credential_privately(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _resolving_to(monkeypatch, [PUBLIC])
    calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append((cmd, kwargs["env"]))
        return subprocess.CompletedProcess(cmd, 1, b"", b"fatal: repository not found")

    monkeypatch.setattr(git_module.subprocess, "run", fake_run)
    spec = source_spec(git="https://bot:t0ken@git.example.org/o/r.git")
    assert spec.url == "https://git.example.org/o/r.git" and spec.credential == "bot:t0ken"
    assert "t0ken" not in repr(spec)
    with pytest.raises(IngestError, match="cannot fetch the git repository"):
        GitSource(spec.url, cache_dir=tmp_path, credential=spec.credential)
    cmd, env = calls[0]
    assert "http.followRedirects=false" in cmd
    assert f"http.curloptResolve=git.example.org:443:{PUBLIC}" in cmd
    assert not any("t0ken" in part for part in cmd)
    header = "Authorization: Basic " + base64.b64encode(b"bot:t0ken").decode()
    assert header in env.values() and "http.extraHeader" in env.values()


@pytest.fixture
def not_found_server() -> Iterator[int]:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_every_failure_to_reach_a_repository_reads_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, not_found_server: int
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    messages = []
    for url in (f"http://127.0.0.1:{not_found_server}/r.git", f"http://127.0.0.1:{closed}/r.git"):
        with pytest.raises(IngestError) as err:
            GitSource(url, cache_dir=tmp_path, allowed_hosts=["127.0.0.1"], timeout_s=30)
        messages.append(str(err.value).replace(url, "<url>"))
    _resolving_to(monkeypatch, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(IngestError) as err:
        GitSource("http://no-such-host.example.org/r.git", cache_dir=tmp_path)
    messages.append(str(err.value).replace("http://no-such-host.example.org/r.git", "<url>"))
    assert len(set(messages)) == 1, messages
    assert "cannot fetch the git repository <url>" in messages[0]
    assert not list((tmp_path / "git").glob("*.tmp*"))


def test_credentials_split_sealed_and_unsealed(monkeypatch: pytest.MonkeyPatch, corral_env: Path) -> None:
    from corral.core.config import get_settings

    assert split_credential("https://tok@h.org/r.git") == ("https://h.org/r.git", "tok")
    assert split_credential("https://u:p%40ss@h.org:8443/r.git") == ("https://h.org:8443/r.git", "u:p@ss")
    assert split_credential("ssh://git:pw@h.org/r.git") == ("ssh://git@h.org/r.git", None)
    assert split_credential("git@h.org:o/r.git") == ("git@h.org:o/r.git", None)
    assert split_credential("https://h.org/r.git") == ("https://h.org/r.git", None)

    sealed = seal("bot:t0ken")
    assert "t0ken" not in sealed and unseal(sealed) == "bot:t0ken"
    monkeypatch.setenv("CORRAL_SECRET_KEY", "another-secret-key-of-at-least-32-characters")
    get_settings.cache_clear()
    with pytest.raises(IngestError, match="CORRAL_SECRET_KEY"):
        unseal(sealed)
    assert GitSpec("https://h.org/r.git", None, "a:b") != GitSpec("https://h.org/r.git")
