"""Which addresses a user-given URL (`callback_url`) may reach: public ones only.

Checked when the URL is submitted and again right before each delivery (a name may
resolve elsewhere by then). A URL is refused when its host, however it is spelled,
is or resolves to any address that is loopback, private, link-local, unspecified,
multicast, reserved, shared (CGNAT), or an IPv6 form of one of those (IPv4-mapped,
NAT64, 6to4). Numeric spellings (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`)
are read here, as the C resolver reads them, before any resolver is asked. An
operator may allow specific hosts (`CALLBACK_ALLOWED_HOSTS`), which then skip the
address check. Redirects are never followed by the sender.

Pure: the resolver is passed in, so tests stub it and no lookup or connection is made.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Iterable[str]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class RefusedDestination(ValueError):
    """A URL that may not be called: its reason names no address it resolved to."""


def numeric_host(host: str) -> Address | None:
    """The address a numeric host spells (dotted, short, decimal, octal or hex forms, or
    IPv6 in brackets or not), or None for a name."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    values = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                values.append(int(part, 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError:
            return None
    # inet_aton: the last part fills the remaining bytes (a.b.c.d, a.b.cd, a.bcd, abcd).
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


def _embedded(address: Address) -> Address | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden(address: Address) -> bool:
    """Whether `address` (or the IPv4 address inside it) is anything but public unicast."""
    inner = _embedded(address)
    if inner is not None and forbidden(inner):
        return True
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or address in _SHARED
        or not address.is_global
    )


def allowed_callback_hosts(setting: str) -> list[str]:
    """CALLBACK_ALLOWED_HOSTS (`host` or `host:port`, comma-separated) as a list."""
    return [part.strip() for part in setting.split(",") if part.strip()]


def allowed_host(host: str, port: int, allowed: Iterable[str]) -> bool:
    """Whether the operator allows `host` (or `host:port`) by name."""
    names = {a.strip().lower() for a in allowed if a.strip()}
    return host.lower() in names or f"{host.lower()}:{port}" in names


def check_url(
    url: str,
    resolve: Resolver,
    allowed: Iterable[str] = (),
    allow_http: bool = False,
) -> None:
    """Raise RefusedDestination unless `url` may be called now."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedDestination("callback_url is not a URL") from None
    if not host or parts.username or parts.password:
        raise RefusedDestination("callback_url must be an absolute URL without credentials")
    allowed = list(allowed)
    by_operator = allowed_host(host, port, allowed)
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_http):
        raise RefusedDestination("callback_url must be https")
    if parts.scheme == "http" and not by_operator:
        raise RefusedDestination("plain http callbacks go only to hosts the operator allows")
    if by_operator:
        return
    numeric = numeric_host(host)
    if numeric is not None:
        addresses: list[Address] = [numeric]
    else:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port)]
        except (OSError, ValueError):
            raise RefusedDestination("callback_url's host does not resolve") from None
        if not addresses:
            raise RefusedDestination("callback_url's host does not resolve")
    if any(forbidden(a) for a in addresses):
        raise RefusedDestination(
            "callback_url must reach a public address (not loopback, private, link-local, "
            "unspecified, multicast or reserved)"
        )


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host` (every family)."""
    import socket

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})
