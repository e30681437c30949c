"""Addresses and networks as plain strings: matching, widening, showing. No models here."""

import functools
import ipaddress
from collections.abc import Iterable


def widened(address: str) -> str:
    """The usual network around an address: its /24 (IPv4) or /64 (IPv6)."""
    ip = ipaddress.ip_address(address)
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))


def display_network(network: str) -> str:
    """A single-address network shows as the bare address."""
    net = ipaddress.ip_network(network)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def ip_in_networks(address: str, networks: Iterable[str]) -> bool:
    """True if address lies in one of networks; IPv4-mapped IPv6 counts as its IPv4 form."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for network in networks:
        try:
            if ip in _parsed_network(network):
                return True
        except ValueError:
            continue
    return False


@functools.lru_cache(maxsize=4096)
def _parsed_network(network: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # Every API call checks its key's allowlist; parsing the same few strings each time
    # would cost more than the rest of the check.
    return ipaddress.ip_network(network)
