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


def refusal(address: IpAddress) -> str | None:
    """Why an address is not public, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        mapped = refusal(address.ipv4_mapped)
        return f"IPv4-mapped {mapped}" if mapped else None
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
