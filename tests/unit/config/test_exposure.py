"""Which addresses count as loopback, and what is refused without authentication."""

from __future__ import annotations

import pytest

from jobq.config.exposure import exposure_problems, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["", "0.0.0.0", "::", "10.0.0.5", "192.168.1.1", "2001:db8::1"])
def test_addresses_reachable_from_the_network(host: str) -> None:
    assert not is_loopback(host)


def test_an_unresolvable_name_is_not_called_safe() -> None:
    assert not is_loopback("no-such-host.invalid")


def test_non_loopback_listeners_are_refused_without_auth_or_insecure() -> None:
    listeners = [("grpc.host", "0.0.0.0"), ("health.host", "127.0.0.1"), ("metrics.host", "")]
    problems = exposure_problems(listeners, authenticated=False, insecure=False)
    assert len(problems) == 2
    assert problems[0].startswith("grpc.host is 0.0.0.0, which is reachable from the network")
    assert "--insecure" in problems[0]
    assert problems[1].startswith("metrics.host is (all interfaces)")


def test_authentication_or_an_explicit_insecure_allows_them() -> None:
    listeners = [("grpc.host", "0.0.0.0")]
    assert exposure_problems(listeners, authenticated=True, insecure=False) == []
    assert exposure_problems(listeners, authenticated=False, insecure=True) == []
