"""SSRF guard: https only, public addresses only, checked on every address a name resolves to."""

from __future__ import annotations

import ipaddress

import pytest

from wabapool.service.ssrf import UnsafeUrl, UrlGuard


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


PUBLIC = UrlGuard(resolver=resolver({"hooks.example.com": ["93.184.215.14"], "v6.example.com": ["2606:4700::1111"]}))


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://127.10.0.1/hook",
        "https://10.1.2.3/hook",
        "https://172.16.5.4/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://[::]/hook",
        "https://224.0.0.1/hook",
        "https://240.0.0.1/hook",
        "https://100.64.0.1/hook",
    ],
)
async def test_addresses_that_are_not_public_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="address"):
        await PUBLIC.check(url)


async def test_a_hostname_resolving_to_a_private_address_is_refused() -> None:
    guard = UrlGuard(resolver=resolver({"evil.example.com": ["93.184.215.14", "10.0.0.7"]}))
    with pytest.raises(UnsafeUrl, match="private address"):
        await guard.check("https://evil.example.com/hook")


async def test_a_hostname_resolving_to_the_metadata_address_is_refused() -> None:
    guard = UrlGuard(resolver=resolver({"rebind.example.com": ["169.254.169.254"]}))
    with pytest.raises(UnsafeUrl, match="link-local"):
        await guard.check("https://rebind.example.com/")


async def test_plain_http_is_refused_outside_development() -> None:
    with pytest.raises(UnsafeUrl, match="https"):
        await PUBLIC.check("http://hooks.example.com/hook")


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/", "https://user:pw@hooks.example.com/", "https:///x"])
async def test_other_schemes_credentials_and_missing_hosts_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        await PUBLIC.check(url)


async def test_a_public_host_is_accepted_and_the_delivery_connects_to_the_checked_address() -> None:
    target = await PUBLIC.check("https://hooks.example.com/billing?tenant=7")
    assert target.address == "93.184.215.14"
    assert target.connect_url == "https://93.184.215.14:443/billing?tenant=7"
    assert target.host_header == "hooks.example.com"
    v6 = await PUBLIC.check("https://v6.example.com:8443/x")
    assert v6.connect_url == "https://[2606:4700::1111]:8443/x" and v6.host_header == "v6.example.com:8443"


async def test_the_check_runs_again_when_dns_changes() -> None:
    table = {"hooks.example.com": ["93.184.215.14"]}
    guard = UrlGuard(resolver=resolver(table))
    await guard.check("https://hooks.example.com/")
    table["hooks.example.com"] = ["127.0.0.1"]
    with pytest.raises(UnsafeUrl, match="loopback"):
        await guard.check("https://hooks.example.com/")


async def test_allow_private_accepts_http_and_loopback_for_development() -> None:
    guard = UrlGuard(allow_private=True, resolver=resolver({"localhost": ["127.0.0.1"]}))
    target = await guard.check("http://localhost:8000/demo")
    assert target.address == "127.0.0.1" and target.host_header == "localhost:8000"
    assert (await guard.check("http://[::1]:9/x")).connect_url == "http://[::1]:9/x"


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def nothing(host: str, port: int) -> list[str]:
        return []

    with pytest.raises(UnsafeUrl, match="does not resolve"):
        await UrlGuard(resolver=nothing).check("https://nowhere.example.com/")


async def test_a_host_that_is_not_a_valid_hostname_is_refused_as_unsafe_not_an_error() -> None:
    with pytest.raises(UnsafeUrl, match="not a valid hostname"):
        await UrlGuard(allow_private=False).check("https://\u0080")


@pytest.mark.parametrize(
    "address",
    [
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254 (metadata)
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (obfuscated 80ff:fffe)
        "2001:0:7f00:1:8000:63bf:f7f7:f7f7",  # Teredo, server 127.0.0.1, public client 8.8.8.8
        "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix of the metadata address
        "64:ff9b::7f00:1",
        "64:ff9b::c0a8:101",  # NAT64 of 192.168.1.1
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64, /96 placement
        "64:ff9b:1:a9fe:a9:fe00::",  # local-use NAT64, /48 placement (the u octet skipped)
        "::ffff:169.254.169.254",  # IPv4-mapped
        "::169.254.169.254",  # IPv4-compatible
        "::127.0.0.1",
        "::10.0.0.1",
    ],
)
async def test_an_ipv6_form_embedding_a_private_ipv4_is_judged_by_that_ipv4(address: str) -> None:
    with pytest.raises(UnsafeUrl, match="(6to4|Teredo|NAT64|IPv4-mapped|IPv4-compatible) .*address"):
        await PUBLIC.check(f"https://[{address}]/latest/meta-data")


@pytest.mark.parametrize(
    "address",
    ["2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8", "2001:0:808:808:8000:63bf:f7f7:f7f7"],
)
async def test_an_ipv6_form_embedding_a_public_ipv4_is_accepted(address: str) -> None:
    target = await PUBLIC.check(f"https://[{address}]/hook")
    assert ipaddress.ip_address(target.address) == ipaddress.ip_address(address)


async def test_a_hostname_resolving_to_a_6to4_metadata_address_is_refused() -> None:
    # The delivery checks each attempt's resolution through this same guard (worker/relay.py).
    guard = UrlGuard(resolver=resolver({"rebind.example.com": ["2002:a9fe:a9fe::1"]}))
    with pytest.raises(UnsafeUrl, match="6to4 link-local"):
        await guard.check("https://rebind.example.com/")
