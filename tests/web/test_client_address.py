"""The client address limits count against: the socket peer, or X-Forwarded-For behind trusted proxies."""

from __future__ import annotations

import pytest

from ingest.errors import ConfigError
from ingest.web.client_address import MAX_ADDRESS, TrustedProxies, client_address

PROXIES = TrustedProxies.from_env({"INGEST_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7, ::1"})


def test_the_socket_peer_by_default() -> None:
    """Without trusted proxies, X-Forwarded-For is ignored: a client can write it."""
    assert client_address("203.0.113.9", ["198.51.100.1"], TrustedProxies()) == "203.0.113.9"


def test_an_untrusted_peer_cannot_claim_another_address() -> None:
    """A peer outside the trusted list is the address, whatever it forwards."""
    assert client_address("203.0.113.9", ["198.51.100.1"], PROXIES) == "203.0.113.9"


def test_the_right_most_untrusted_hop_behind_trusted_proxies() -> None:
    """Behind trusted proxies the address is the right-most hop that is no trusted proxy; the left is ignored."""
    forwarded = ["1.2.3.4, 198.51.100.1", "10.1.2.3"]  # a forged first hop, the client, an inner proxy
    assert client_address("192.168.1.7", forwarded, PROXIES) == "198.51.100.1"


def test_every_hop_trusted_gives_the_left_most() -> None:
    """When every forwarded hop is a trusted proxy, the left-most one is the address."""
    assert client_address("10.0.0.1", ["10.0.0.2, 10.0.0.3"], PROXIES) == "10.0.0.2"


def test_a_garbage_hop_stops_at_the_proxy() -> None:
    """A hop that is not an IP address ends the walk at the trusted hop to its right."""
    assert client_address("10.0.0.1", ["198.51.100.1, unknown, 10.0.0.3"], PROXIES) == "10.0.0.3"
    assert client_address("10.0.0.1", [], PROXIES) == "10.0.0.1"


def test_ipv4_mapped_and_odd_peers() -> None:
    """An IPv4-mapped IPv6 proxy is trusted as its IPv4 form; a peer that is no IP is kept, bounded."""
    assert client_address("::ffff:10.0.0.1", ["198.51.100.1"], PROXIES) == "198.51.100.1"
    assert client_address("testclient", ["198.51.100.1"], PROXIES) == "testclient"
    assert client_address("x" * 500, [], PROXIES) == "x" * MAX_ADDRESS
    assert client_address(None, [], PROXIES) == "unknown"


def test_a_bad_entry_stops_the_process() -> None:
    """An entry that is no address or network is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match="INGEST_TRUSTED_PROXIES"):
        TrustedProxies.from_env({"INGEST_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"})
