"""Network policy. No test resolves a real name: resolvers are injected, hosts are literals."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from inferpipe.net.egress import (
    Resolver,
    UrlRefusedError,
    check_url,
    check_url_async,
    ensure_url_allowed,
)


def fixed(*addresses: str) -> Resolver:
    def resolve(host: str, port: int) -> Sequence[str]:
        return addresses

    return resolve


def no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"unexpected DNS lookup of {host}")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/admin", "127.0.0.1 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://192.168.0.10/", "192.168.0.10 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://0.0.0.0/", "0.0.0.0 is"),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1, which is a loopback address"),
        ("http://[::ffff:10.0.0.1]/", "is a private address"),
        ("http://localhost:3000/", "localhost is a loopback host name"),
        ("http://db.localhost/", "is a loopback host name"),
    ],
)
def test_private_destinations_are_refused_with_a_reason(url: str, reason: str) -> None:
    decision = check_url(url, resolver=no_dns)
    assert not decision.allowed
    assert reason in decision.reason
    assert "allow_private" in decision.reason


def test_allow_private_lets_them_through() -> None:
    assert check_url("http://10.1.2.3/hook", allow_private=True).allowed
    assert check_url("http://localhost:3000/", allow_private=True).allowed


def test_every_resolved_address_is_checked() -> None:
    decision = check_url("https://rebind.example/", resolver=fixed("93.184.216.34", "10.0.0.5"))
    assert not decision.allowed
    assert decision.reason.startswith("rebind.example resolves to 10.0.0.5, which is a private")
    ok = check_url("https://ok.example/", resolver=fixed("93.184.216.34"))
    assert ok.allowed and ok.addresses == ("93.184.216.34",)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("gopher://example.com/", "scheme 'gopher' is not allowed"),
        ("https://user:pw@example.com/", "credentials in the URL are not allowed"),
        ("https:///nohost", "the URL has no host"),
        ("http://example.com:99999/", "malformed URL"),
    ],
)
def test_malformed_or_unsupported_urls_are_refused(url: str, reason: str) -> None:
    assert reason in check_url(url, resolver=no_dns).reason


def test_unresolvable_hosts_are_refused() -> None:
    def failing(host: str, port: int) -> Sequence[str]:
        raise OSError("Name or service not known")

    decision = check_url("https://nope.invalid/", resolver=failing)
    assert not decision.allowed and "cannot resolve host 'nope.invalid'" in decision.reason


def test_ensure_raises_a_clear_error() -> None:
    with pytest.raises(UrlRefusedError) as info:
        ensure_url_allowed("http://127.0.0.1/")
    assert info.value.reason.startswith("127.0.0.1 is a loopback address")
    assert "request to 'http://127.0.0.1/' refused" in str(info.value)


async def test_async_check_uses_the_async_resolver() -> None:
    async def resolve(host: str, port: int) -> Sequence[str]:
        assert (host, port) == ("svc.example", 443)
        return ["172.16.3.4"]

    decision = await check_url_async("https://svc.example/x", resolver=resolve)
    assert (
        not decision.allowed
        and "resolves to 172.16.3.4, which is a private address" in decision.reason
    )
