"""Which hosts a git source may fetch from: public addresses only, unless the host is named in
``CORRAL_GIT_ALLOWED_HOSTS`` (server-side request forgery).

A git URL is a request the server makes on a caller's behalf. Its host is resolved and every
address must be public: loopback, private (RFC 1918, unique-local), link-local (cloud metadata at
169.254.169.254), shared (CGNAT), multicast, reserved and unspecified addresses are refused, for
IPv4 and IPv6, including IPv4 embedded in IPv6 (``::ffff:127.0.0.1``, NAT64, 6to4, Teredo).

The check runs when the job is submitted and again right before each clone or fetch, because a
name can resolve elsewhere by then (DNS rebinding). For http(s) the addresses checked are also the
ones git connects to (``http.curloptResolve``), and redirects are not followed, so neither a second
lookup nor a redirect reaches an address that was not checked. ssh resolves on its own: its window
is the moment between the check and the connection.

Every failure to reach a repository reads the same (:func:`unreachable`): "not found", "connection
refused", a timeout and a name that does not resolve must not tell a caller which internal hosts
and ports exist. The details go to the log.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from corral.core.errors import IngestError, PermissionDeniedError
from corral.core.netaddr import non_public_reason

__all__ = ["RemoteHost", "check_remote", "remote_host", "unreachable"]

_SCP_HOST = re.compile(r"^(?:[^@/]+@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22}


@dataclass(frozen=True, slots=True)
class RemoteHost:
    scheme: str  # http | https | ssh
    host: str  # lower case, IPv6 without brackets
    port: int


def remote_host(url: str) -> RemoteHost | None:
    """The host a remote git URL names (``None`` for a local path or ``file://`` URL)."""
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            return None
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            port = _DEFAULT_PORTS[scheme]
        return RemoteHost(scheme, parts.hostname.lower(), port)
    match = _SCP_HOST.match(url)
    return RemoteHost("ssh", match.group("host").lower(), 22) if match else None


def unreachable(shown_url: str) -> str:
    """The one message for a repository that cannot be fetched, whatever the reason."""
    return (f"cannot fetch the git repository {shown_url[:300]}: it does not exist, its host cannot "
            "be reached from this server, or it needs credentials")


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_remote(url: str, shown_url: str, allowed_hosts: Sequence[str], *,
                 must_resolve: bool) -> tuple[RemoteHost, list[str]] | None:
    """Refuse a git URL whose host is not public; its host and the addresses checked.

    ``None`` for a URL that names no remote host. A host in ``allowed_hosts`` is not checked (its
    addresses are then empty: git resolves it). A name that does not resolve is an
    :class:`IngestError` with the :func:`unreachable` message when ``must_resolve`` (right before a
    fetch), and passes otherwise (at submit time: the job then fails with that same message).
    """
    remote = remote_host(url)
    if remote is None:
        return None
    allowed = {h.strip().lower().strip("[]") for h in allowed_hosts}
    if remote.host in allowed:
        return remote, []
    try:
        addresses = _resolve(remote.host, remote.port)
    except (OSError, UnicodeError, ValueError):
        if must_resolve:
            raise IngestError(unreachable(shown_url)) from None
        return remote, []
    for address in addresses:
        reason = non_public_reason(address)
        if reason is not None:
            raise PermissionDeniedError(
                f"git host {remote.host[:200]!r} resolves to a {reason} address ({address}): "
                "fetching from it is refused; list the host in CORRAL_GIT_ALLOWED_HOSTS if it is "
                "a trusted internal server")
    if not addresses and must_resolve:
        raise IngestError(unreachable(shown_url))
    return remote, addresses
