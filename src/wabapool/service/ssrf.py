"""No server-side request forgery: a webhook URL must be https and reach only public addresses.

Checked when the URL is set and again before every delivery (DNS can change): the host is resolved,
every address it resolves to must be public, and the delivery connects to the address that was
checked (not to a second resolution an attacker could have changed). `allow_private` (tests,
development, `serve --demo`) also allows `http://` and loopback/private addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 forms that carry an IPv4 address and reach it (through a relay, a translator or the host's own
# IPv4 stack): each is judged by the IPv4 it embeds, so 6to4 `2002:a9fe:a9fe::` is the metadata address.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 in the last 32 bits
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: an operator's own prefix, /48 to /96
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d (RFC 4291), :: and ::1 excepted
# RFC 6052 prefix lengths a local-use NAT64 prefix may have; bits 64-71 (the "u" octet) never carry IPv4.
NAT64_LOCAL_PREFIX_LENGTHS = (48, 56, 64, 96)
Resolver = Callable[[str, int], Awaitable[list[str]]]
# A hostname resolving to more addresses than this is refused rather than checked at length.
MAX_ADDRESSES = 32
URL_MAX_LENGTH = 2048


class UnsafeUrl(ValueError):
    """A webhook URL we refuse to call; the message says why (safe to show the caller)."""


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (TCP)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"the host {host!r} does not resolve") from exc
    except UnicodeError as exc:  # not a valid hostname (IDNA refuses it before any lookup)
        raise UnsafeUrl("the URL's host is not a valid hostname") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _rfc6052_ipv4(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address an RFC 6052 translator of this prefix length reaches (the u octet skipped)."""
    bits = f"{int(address):0128b}"
    without_u = bits[:64] + bits[72:]
    start = 88 if prefix_length == 96 else prefix_length
    return ipaddress.IPv4Address(int(without_u[start : start + 32], 2))


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """(form, the IPv4 addresses it reaches) for an IPv6 address that embeds IPv4, else None."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return "6to4", (address.sixtofour,)
    if address.teredo is not None:
        return "Teredo", address.teredo  # (server, client): the client is reached through the server
    if address in NAT64_WELL_KNOWN:
        return "NAT64", (_rfc6052_ipv4(address, 96),)
    if address in NAT64_LOCAL_USE:
        # The prefix length is the operator's choice: every placement it could mean must be public.
        return "NAT64", tuple(_rfc6052_ipv4(address, length) for length in NAT64_LOCAL_PREFIX_LENGTHS)
    if address in IPV4_COMPATIBLE and int(address) > 1:
        return "IPv4-compatible", (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    return None


def refusal(address: IpAddress) -> str | None:
    """Why an address is not public, or None when it is.

    An IPv6 address embedding IPv4 (mapped, compatible, 6to4, Teredo, NAT64) is judged by what it embeds:
    refused when any embedded address is not public, accepted when all are.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            form, addresses = embedded
            for ipv4 in addresses:
                reason = refusal(ipv4)
                if reason is not None:
                    return f"{form} {reason} ({ipv4})"
            return None
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    for name, matched in checks:
        if matched:
            return f"{name} address"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (a checked address) and what to say to it (host, SNI)."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UrlGuard:
    """Checks webhook URLs; the resolver is injected for tests."""

    allow_private: bool = False
    resolver: Resolver = resolve_host

    def parse(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, path-and-query) of an acceptable URL, without resolving it."""
        if len(url) > URL_MAX_LENGTH:
            raise UnsafeUrl(f"a webhook URL is at most {URL_MAX_LENGTH} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UnsafeUrl("the webhook URL is malformed") from exc
        allowed = ("https", "http") if self.allow_private else ("https",)
        if parts.scheme not in allowed:
            raise UnsafeUrl("a webhook URL must use https")
        if parts.username or parts.password:
            raise UnsafeUrl("a webhook URL carries no credentials")
        host = parts.hostname
        if not host:
            raise UnsafeUrl("the webhook URL has no host")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path

    async def check(self, url: str) -> Target:
        """Resolve and check every address; the Target connects to the first one."""
        scheme, host, port, path = self.parse(url)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await self.resolver(host, port)]
        if not addresses:
            raise UnsafeUrl(f"the host {host!r} does not resolve")
        if len(addresses) > MAX_ADDRESSES:
            raise UnsafeUrl(f"the host {host!r} resolves to too many addresses")
        if not self.allow_private:
            for address in addresses:
                reason = refusal(address)
                if reason is not None:
                    raise UnsafeUrl(f"the webhook host {host!r} resolves to a {reason} ({address})")
        return Target(url=url, scheme=scheme, host=host, port=port, path=path, address=str(addresses[0]))
