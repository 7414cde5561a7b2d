"""SSRF guard: https only, public addresses only, checked on every address a name resolves to."""

from __future__ import annotations

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
