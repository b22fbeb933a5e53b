"""Which network addresses a server may reach on a user's behalf (git fetches, webhooks).

Anything but a public address is refused: loopback, private, link-local, shared (CGNAT), multicast,
reserved and unspecified ones, and IPv6 forms that carry one of those (IPv4-mapped, 6to4, Teredo,
NAT64), so that a URL cannot make the server talk to itself or its network.
"""

from __future__ import annotations

import ipaddress

__all__ = ["non_public_reason"]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_FLAGS = (("is_unspecified", "unspecified"), ("is_loopback", "loopback"), ("is_link_local", "link-local"),
          ("is_multicast", "multicast"), ("is_private", "private"), ("is_reserved", "reserved"))


def non_public_reason(address: str) -> str | None:
    """Why ``address`` (an IP literal, IPv6 zone allowed) must not be reached, or ``None`` when it is
    a public address. Raises ``ValueError`` for text that is not an IP address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return non_public_reason(str(embedded))
    for flag, reason in _FLAGS:
        if getattr(ip, flag):
            return reason
    return None if ip.is_global else "not public"
