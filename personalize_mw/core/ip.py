"""Client addresses, cut to their network before anything stores them.

With ``ip: truncate`` a record keeps the /24 of an IPv4 address or the /48 of
an IPv6 one: enough for a coarse location or spotting a flood from one
network, not enough to name a household. The full address never leaves here.
"""

from __future__ import annotations

import ipaddress

_V4_PREFIX = 24
_V6_PREFIX = 48


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(address: str | None) -> IPAddress | None:
    """The peer address the server saw, as an address; None if unreadable.

    '::ffff:203.0.113.7' is an IPv4 client on a dual-stack socket, and an IPv6 zone id is dropped.
    """
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def truncate_ip(address: str | None) -> str | None:
    """'203.0.113.77' -> '203.0.113.0', '2001:db8:1:2::5' -> '2001:db8:1::'; None if unreadable."""
    ip = client_address(address)
    if ip is None:
        return None
    prefix = _V4_PREFIX if ip.version == 4 else _V6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
