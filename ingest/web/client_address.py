"""Who is on the other end of a request: the address limits are counted against.

By default it is the socket peer (``scope["client"]``). Behind a proxy every request comes
from the proxy, so a limit per address would be a limit on the proxy: list the proxies in
``INGEST_TRUSTED_PROXIES`` (addresses or networks, comma-separated) and, only for a peer
in that list, the address is the right-most hop of ``X-Forwarded-For`` that is not itself
a trusted proxy. Everything to the left of it was written by the client and proves
nothing. A hop that is not an IP address ends the walk at the trusted hop to its right.

uvicorn's own proxy handling (``FORWARDED_ALLOW_IPS``, default ``127.0.0.1``) may already
have replaced the peer with the forwarded address; walking from the right and skipping
trusted hops gives the same answer either way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from ingest.errors import ConfigError

__all__ = ["MAX_ADDRESS", "TrustedProxies", "client_address", "of_request"]

MAX_ADDRESS = 64  # a peer that is not an IP address (a Unix socket, a test client) is cut to this
_MAX_HOPS = 32

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed; empty: none is."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TrustedProxies:
        networks = []
        for raw in env.get("INGEST_TRUSTED_PROXIES", "").split(","):
            if raw.strip():
                try:
                    networks.append(ipaddress.ip_network(raw.strip(), strict=False))
                except ValueError:
                    problem = f"entry {raw.strip()!r} is not an IP address or network (10.0.0.0/8)"
                    raise ConfigError(f"INGEST_TRUSTED_PROXIES: {problem}") from None
        return cls(tuple(networks))

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.networks)


def of_request(request: HTTPConnection, trusted: TrustedProxies) -> str:
    """The address ``request`` is counted against."""
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"), trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: TrustedProxies) -> str:
    """The address a request from ``peer`` with these ``X-Forwarded-For`` values is counted against."""
    address = (peer or "unknown")[:MAX_ADDRESS]
    if not trusted.networks or not trusted.trusts(address):
        return address
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops[-_MAX_HOPS:]):
        ip = _ip(hop)
        if ip is None:
            return address
        address = str(ip)
        if not trusted.trusts(address):
            return address
    return address


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
