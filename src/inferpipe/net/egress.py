"""Which URLs an outgoing request (a workflow HTTP node, a webhook delivery) may call: no
private, loopback, link-local or multicast addresses unless the caller says `allow_private`.

The host is resolved and *every* address it resolves to is checked, so a public name pointing
at 127.0.0.1 is refused too. A transport should connect to one of `UrlDecision.addresses`
(not resolve again) so a DNS answer that changes between check and connect cannot slip through.

Whether a node may set `allow_private` at all is the operator's decision, not the tenant's:
an `EgressPolicy` (server-wide, or for listed workspaces) is checked when a graph is saved (a
node beyond it is refused) and again when it runs.

Example::

    decision = check_url("http://169.254.169.254/latest/meta-data", allow_private=False)
    assert not decision.allowed  # "169.254.169.254 is a link-local address (...)"
    policy = EgressPolicy(private_workspaces=frozenset({"internal-tools"}))
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from inferpipe.core.errors import InferpipeError


class UrlRefusedError(InferpipeError):
    """A URL was refused by the network policy (never retried); `reason` says why."""

    code = "url_refused"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"request to {url!r} refused: {reason}")
        self.url = url
        self.reason = reason


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> the IP addresses the host resolves to."""
AsyncResolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


PRIVATE_EGRESS_ENV = "INFERPIPE_EGRESS_PRIVATE"
"""Workspaces whose HTTP nodes may reach private addresses: ``*`` (all) or a comma list."""


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """The operator's decision on private addresses (loopback, private networks, link-local
    and cloud metadata): nobody by default; every workspace (`allow_private`) or the listed
    ones. A node still has to ask with its own `allow_private`.
    """

    allow_private: bool = False
    private_workspaces: frozenset[str] = frozenset()

    def allows_private(self, workspace: str) -> bool:
        """Whether nodes of `workspace` may set `allow_private`."""
        return self.allow_private or workspace in self.private_workspaces

    @classmethod
    def from_env(cls) -> EgressPolicy:
        """The policy in `PRIVATE_EGRESS_ENV` (unset: nobody)."""
        names = {n.strip() for n in os.environ.get(PRIVATE_EGRESS_ENV, "").split(",")} - {""}
        return cls(allow_private="*" in names, private_workspaces=frozenset(names - {"*"}))


@dataclass(frozen=True, slots=True)
class UrlDecision:
    """Whether a URL may be called, why not, and the addresses that were checked."""

    allowed: bool
    reason: str
    host: str = ""
    addresses: tuple[str, ...] = ()


def address_refusal(address: IPAddress) -> str | None:
    """Why `address` is not a public destination, or None when it is."""
    what = _non_public_kind(address)
    return None if what is None else f"{address} is {what}"


def _non_public_kind(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_link_local, "a link-local address (cloud metadata services live there)"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a globally routable address"),
    )
    return next((what for refused, what in checks if refused), None)


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, through the system resolver (blocking)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


async def resolve_host_async(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


def check_url(
    url: str, *, allow_private: bool = False, resolver: Resolver = resolve_host
) -> UrlDecision:
    """Decide whether `url` may be called; resolves the host with `resolver`."""
    parsed = _parse(url)
    if isinstance(parsed, UrlDecision):
        return parsed
    host, port = parsed
    early = _early_decision(host, allow_private)
    if early is not None:
        return early
    try:
        addresses = resolver(host, port)
    except OSError as exc:
        return UrlDecision(False, f"cannot resolve host {host!r}: {exc}", host)
    return _judge(host, addresses, allow_private)


async def check_url_async(
    url: str, *, allow_private: bool = False, resolver: AsyncResolver = resolve_host_async
) -> UrlDecision:
    """`check_url` for async callers: resolution does not block the event loop."""
    parsed = _parse(url)
    if isinstance(parsed, UrlDecision):
        return parsed
    host, port = parsed
    early = _early_decision(host, allow_private)
    if early is not None:
        return early
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        return UrlDecision(False, f"cannot resolve host {host!r}: {exc}", host)
    return _judge(host, addresses, allow_private)


def ensure_url_allowed(
    url: str, *, allow_private: bool = False, resolver: Resolver = resolve_host
) -> UrlDecision:
    """`check_url`, raising UrlRefusedError with the reason when the URL is refused."""
    decision = check_url(url, allow_private=allow_private, resolver=resolver)
    if not decision.allowed:
        raise UrlRefusedError(url, decision.reason)
    return decision


def literal_refusal(url: str) -> str | None:
    """Save-time check without DNS: refuse bad schemes and hosts that are private literally
    (an IP literal in any notation, or a localhost name). None when nothing is known wrong."""
    parsed = _parse(url)
    if isinstance(parsed, UrlDecision):
        return parsed.reason
    early = _early_decision(parsed[0], allow_private=False)
    return early.reason if early is not None and not early.allowed else None


def _parse(url: str) -> tuple[str, int] | UrlDecision:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return UrlDecision(False, f"malformed URL: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return UrlDecision(
            False, f"scheme {scheme or '(none)'!r} is not allowed (use http or https)"
        )
    if parts.username is not None or parts.password is not None:
        return UrlDecision(
            False, "credentials in the URL are not allowed: send them in a header from a secret"
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return UrlDecision(False, "the URL has no host")
    return host, port or (443 if scheme == "https" else 80)


def _early_decision(host: str, allow_private: bool) -> UrlDecision | None:
    """Decide without DNS when the host is an address literal or a local name."""
    address = _literal_address(host)
    if address is not None:
        literal = host.strip("[]")
        text = literal if _is_ip(literal) else str(address)
        return _judge(host, [text], allow_private)
    lowered = host.lower()
    if lowered in _LOCAL_NAMES or lowered.endswith(".localhost"):
        if allow_private:
            return UrlDecision(True, "local host allowed by allow_private", host)
        return UrlDecision(
            False, f"{host} is a loopback host name (set allow_private to call it)", host
        )
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        # inet_aton accepts the legacy forms resolvers also accept: 2130706433, 0x7f.1, 127.1.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _judge(host: str, addresses: Sequence[str], allow_private: bool) -> UrlDecision:
    if not addresses:
        return UrlDecision(False, f"host {host!r} resolves to no address", host)
    checked = tuple(addresses)
    if allow_private:
        return UrlDecision(True, "private addresses allowed by allow_private", host, checked)
    for text in checked:
        try:
            what = _non_public_kind(ipaddress.ip_address(text))
        except ValueError:
            what = "not an IP address"
        if what is not None:
            subject = text if text == host.strip("[]") else f"{host} resolves to {text}, which"
            reason = f"{subject} is {what} (set allow_private to call it)"
            return UrlDecision(False, reason, host, checked)
    return UrlDecision(True, "public address", host, checked)
