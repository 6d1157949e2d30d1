"""Where a URL from outside may lead: the guard against server-side request forgery.

A client names a URL (a webhook), or a backend answers with one (an output file to fetch),
and taskgate's server connects to it. Without a check, they could make the server reach what
only the server can reach: its own loopback services, the private network, a cloud metadata
endpoint (169.254.169.254). So a URL must be http(s), and every address its host resolves to
must be globally routable, unless an admin allowed private addresses altogether
(``allow_private``) or named the host or network (``allowed_hosts``).

The check runs twice: when the URL is accepted (a clear 400 at once) and on every connection
(:class:`GuardedResolver`), because DNS may answer differently by then (DNS rebinding); the
connection goes to the very addresses that were checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
HINT = "an admin may allow it (webhooks.allow_private or webhooks.allowed_hosts)"


class Refused(ValueError):
    """The URL may not be used; the message says why, for the client."""


def _kind(ip: IP) -> str | None:
    """What makes an address off limits (None: globally routable)."""
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-global", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _embedded(ip: IP) -> list[IP]:
    """IPv4 addresses an IPv6 address carries (6to4, Teredo): a packet to one may reach them."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    teredo = ip.teredo[1] if ip.teredo else None
    return [a for a in (ip.sixtofour, teredo) if a is not None]


def address_problem(ip: IP) -> str | None:
    """Why connecting to ``ip`` is refused by default, or None if it is fine. An IPv4-mapped
    address (``::ffff:127.0.0.1``) is judged by the IPv4 address it is: a socket reaches that."""
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    for inner in [mapped] if mapped else _embedded(ip):
        kind = _kind(inner)
        if kind is not None:
            return f"{kind} (IPv4 {inner} inside {ip})"
    return None if mapped else _kind(ip)


def _parse_allowed(entries: Iterable[str]) -> tuple[frozenset[str], tuple[Network, ...]]:
    names, nets = set(), []
    for entry in entries:
        entry = entry.strip().lower()
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return frozenset(names), tuple(nets)


@dataclass(frozen=True)
class Guard:
    """The policy: ``allow_private`` lifts the address check; ``allowed_hosts`` names hosts
    (``hooks.internal``, or ``*.corp.example`` for any subdomain) and networks
    (``10.1.0.0/16``, ``192.168.1.7``) that may be private. ``hint`` tells, in a refusal,
    which setting allows more."""

    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()
    hint: str = field(default=HINT, compare=False)
    _names: frozenset[str] = field(init=False, repr=False)
    _nets: tuple[Network, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names, nets = _parse_allowed(self.allowed_hosts)
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_nets", nets)

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        wild = (n[1:] for n in self._names if n.startswith("*."))
        return host in self._names or any(host.endswith(suffix) for suffix in wild)

    def _net_allowed(self, ip: IP) -> bool:
        return any(ip.version == n.version and ip in n for n in self._nets)

    def check_address(self, host: str, ip: IP) -> None:
        """Refuse ``ip`` (an address of ``host``) unless it is global or allowed."""
        if self.allow_private or self.host_allowed(host) or self._net_allowed(ip):
            return
        problem = address_problem(ip)
        if problem is not None:
            where = f"{ip}" if host == str(ip) else f"{host!r} resolves to {ip}"
            raise Refused(f"{where}, a {problem} address; refused ({self.hint})")

    def parse(self, url: str) -> URL:
        """An http(s) URL with a host, or :class:`Refused`."""
        try:
            parsed = URL(url)
            host = parsed.host  # decoding an IDNA host may fail here, not above
        except (ValueError, TypeError) as exc:  # UnicodeError is a ValueError
            raise Refused(f"not a valid URL: {exc}") from None
        if parsed.scheme not in SCHEMES:
            raise Refused(f"the URL must be http or https, not {parsed.scheme or 'relative'!r}")
        if not host:
            raise Refused("the URL has no host")
        return parsed

    def check_literal(self, url: URL) -> bool:
        """Check a host written as an IP address (no DNS involved); False if it is a name."""
        ip = literal_ip(url.raw_host or "")
        if ip is None:
            return False
        self.check_address(str(ip), ip)
        return True

    async def check_url(self, url: str) -> URL:
        """Parse and check a URL now: its scheme, and every address its host resolves to."""
        parsed = self.parse(url)
        if self.allow_private or self.check_literal(parsed):
            return parsed
        host = parsed.raw_host or ""
        if not self.host_allowed(host):
            for ip in await resolve(host, parsed.port or 0):
                self.check_address(host, ip)
        return parsed


def literal_ip(host: str) -> IP | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(host: str, port: int = 0) -> list[IP]:
    """Every address of ``host``; :class:`Refused` when it has none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"cannot resolve host {host!r}: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, checking every address before aiohttp connects to it. Names
    only: aiohttp does not resolve an IP literal, so callers check those with
    :meth:`Guard.check_literal`."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for r in found:
            self.guard.check_address(host, ipaddress.ip_address(r["host"]))
        return found

    async def close(self) -> None:
        await self._inner.close()


def guarded_session(guard: Guard, **kw: Any) -> aiohttp.ClientSession:
    """A session that connects only where ``guard`` allows, on every request and every
    redirect: host names through :class:`GuardedResolver` (to the very addresses checked), IP
    literals, which aiohttp does not resolve, by a middleware; no proxy from the environment
    (the guard must see the real host)."""

    async def check_literal(
        req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        guard.check_literal(req.url)
        return await handler(req)

    connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard), limit=0)
    return aiohttp.ClientSession(
        connector=connector, middlewares=(check_literal,), trust_env=False, **kw
    )


def guard_of(conf: Any) -> Guard:
    """The guard of a settings section with ``allow_private`` and ``allowed_hosts``."""
    return Guard(bool(conf.allow_private), tuple(conf.allowed_hosts))
