"""The guard on client-supplied URLs: which addresses are off limits, what an admin may
allow, and the re-check at connection time."""

from __future__ import annotations

import ipaddress

import pytest

from taskgate.netguard import Guard, GuardedResolver, Refused, address_problem

BLOCKED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "10.0.0.1": "private",
    "10.255.255.255": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",  # cloud metadata
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "240.0.0.1": "private",  # reserved (ipaddress counts it private too)
    "100.64.0.1": "non-global",  # carrier-grade NAT
    "::1": "loopback",
    "::": "unspecified",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "fe80::1": "link-local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback (IPv4 127.0.0.1 inside ::ffff:7f00:1)",
    "::ffff:10.1.2.3": "private (IPv4 10.1.2.3 inside ::ffff:a01:203)",
    "::ffff:169.254.169.254": "link-local (IPv4 169.254.169.254 inside ::ffff:a9fe:a9fe)",
    "2002:7f00:1::": "loopback (IPv4 127.0.0.1 inside 2002:7f00:1::)",  # 6to4
}
GLOBAL = ["8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "2606:4700:4700::1111"]


@pytest.mark.parametrize(("address", "problem"), BLOCKED.items())
def test_non_global_addresses_are_named(address: str, problem: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


@pytest.mark.parametrize("address", [*GLOBAL, "::ffff:8.8.8.8"])
def test_global_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


async def refused(guard: Guard, url: str) -> str:
    with pytest.raises(Refused) as info:
        await guard.check_url(url)
    return str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.7/hook",
        "https://172.20.1.1/hook",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://[fd00::5]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost:8000/hook",  # a name that resolves to loopback
        "http://2130706433/hook",  # 127.0.0.1 as one number: resolved, then refused
    ],
)
async def test_urls_reaching_private_addresses_are_refused(url: str) -> None:
    message = await refused(Guard(), url)
    assert "refused" in message and "allow_private" in message


async def test_the_message_says_what_the_name_resolved_to() -> None:
    message = await refused(Guard(), "http://localhost:1/x")
    assert "'localhost' resolves to" in message and "loopback" in message


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://8.8.8.8/hook", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("/relative/path", "http or https"),
        ("http:///no-host", "no host"),
        ("http://no-such-host.invalid/hook", "cannot resolve"),
        ("http://xn--/hook", "not a valid URL"),  # a host IDNA cannot decode
    ],
)
async def test_bad_urls_are_refused_with_the_reason(url: str, needle: str) -> None:
    assert needle in await refused(Guard(), url)


async def test_public_addresses_pass() -> None:
    for url in ("http://8.8.8.8/hook", "https://[2606:4700:4700::1111]:8443/x"):
        assert (await Guard().check_url(url)).scheme in ("http", "https")


async def test_allow_private_lets_everything_http_through() -> None:
    guard = Guard(allow_private=True)
    for url in ("http://127.0.0.1/x", "http://localhost/x", "http://[::1]/x", "http://10.0.0.1/"):
        await guard.check_url(url)
    assert "http or https" in await refused(guard, "gopher://127.0.0.1/")


async def test_allowed_hosts_name_hosts_and_networks() -> None:
    guard = Guard(allowed_hosts=("localhost", "*.corp.test", "10.1.0.0/16", "fd00::7"))
    await guard.check_url("http://localhost:8000/hook")
    await guard.check_url("http://LOCALHOST./hook")
    await guard.check_url("http://hooks.corp.test/x")  # allowed by name: not even resolved
    await guard.check_url("http://10.1.200.3/x")
    await guard.check_url("http://[fd00::7]/x")
    assert "cannot resolve" in await refused(guard, "http://corp.test/x")  # not a subdomain
    assert "private" in await refused(guard, "http://10.2.0.1/x")
    assert "loopback" in await refused(guard, "http://127.0.0.1/x")  # the name, not its address


async def test_the_resolver_checks_again_when_connecting() -> None:
    """At delivery time the name is resolved afresh and refused if it now leads inside."""
    strict = GuardedResolver(Guard())
    with pytest.raises(Refused, match="loopback"):
        await strict.resolve("localhost", 80)
    allowed = GuardedResolver(Guard(allowed_hosts=("localhost",)))
    found = await allowed.resolve("localhost", 80)
    assert found and all(ipaddress.ip_address(r["host"]).is_loopback for r in found)
    await strict.close()
    await allowed.close()


def test_literal_hosts_are_checked_without_dns() -> None:
    guard = Guard()
    with pytest.raises(Refused):
        guard.check_literal(guard.parse("http://[::ffff:10.0.0.1]/x"))
    assert guard.check_literal(guard.parse("http://8.8.8.8/x")) is True
    assert guard.check_literal(guard.parse("http://example.test/x")) is False  # a name
