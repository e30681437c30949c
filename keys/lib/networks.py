"""Addresses and networks as plain strings: matching, widening, showing. No models here.

An IPv4-mapped IPv6 address (::ffff:192.0.2.7, how a dual-stack socket reports an IPv4
client) always counts as the IPv4 address it stands for: unmapped() and unmapped_network()
are the one place that says so.
"""

import functools
import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def unmapped(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as its IPv4 form; any other address as it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def unmapped_network(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network (::ffff:10.0.0.0/112) as its IPv4 form (10.0.0.0/16);
    any other network, or one wider than the mapped range, as it is."""
    if not isinstance(network, ipaddress.IPv6Network) or network.prefixlen < 96:
        return network
    mapped = network.network_address.ipv4_mapped
    return network if mapped is None else ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")


def around(address: str, *, v4_prefix: int, v6_prefix: int = 64) -> IPNetwork:
    """The /v4_prefix (IPv4) or /v6_prefix (IPv6) network holding `address`, an IPv4-mapped
    one taken as IPv4. ValueError if `address` is not an IP address."""
    ip = unmapped(ipaddress.ip_address(address))
    prefix = v4_prefix if ip.version == 4 else v6_prefix
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


def widened(address: str) -> str:
    """The usual network around an address: its /24 (IPv4) or /64 (IPv6)."""
    return str(around(address, v4_prefix=24))


def display_network(network: str | IPNetwork) -> str:
    """A single-address network shows as the bare address."""
    net = network if isinstance(network, IPNetwork) else ipaddress.ip_network(network)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def ip_in_networks(address: str, networks: Iterable[str]) -> bool:
    """True if address lies in one of networks; IPv4-mapped IPv6 counts as its IPv4 form."""
    try:
        ip = unmapped(ipaddress.ip_address(address))
    except ValueError:
        return False
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


# 2**128 - 1, the last IPv6 address, has 39 decimal digits.
RANGE_DIGITS = 39


def address_range(network: str) -> tuple[int, str, str]:
    """A network's IP version and its first and last address as numbers written with
    RANGE_DIGITS digits: compared as text they order as the numbers do, on every database
    (IPv6 numbers do not fit a 64-bit integer column)."""
    net = ipaddress.ip_network(network)
    first, last = int(net.network_address), int(net.broadcast_address)
    return net.version, f"{first:0{RANGE_DIGITS}d}", f"{last:0{RANGE_DIGITS}d}"


def network_within(network: str, networks: Iterable[str]) -> bool:
    """True if every address of `network` lies in one of `networks` (same IP version)."""
    inner = unmapped_network(ipaddress.ip_network(network))
    for outer in networks:
        try:
            candidate = _parsed_network(outer)
        except ValueError:
            continue
        if candidate.version == inner.version and inner.subnet_of(candidate):  # type: ignore[arg-type]
            return True
    return False
