"""A DNS stand-in for webhook tests: chosen names resolve to chosen
addresses (the machine has no network, and a test must not depend on one);
every other name goes to the real resolver."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

Answer = str | Callable[[], str]
# A global unicast address for a name that must pass the check. Nothing is
# ever sent to it: tests that deliver point their names at local receivers.
PUBLIC_ADDRESS = "93.184.216.34"


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, Answer]) -> list[str]:
    """Patch socket.getaddrinfo so that each name resolves to its address
    (or to what its callable answers at each lookup); returns the list of
    names looked up, in order, so that a test can count lookups."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in names:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        answer = names[host]
        address = answer() if callable(answer) else answer
        return real(address, port, *args, **kwargs)  # a literal: no DNS

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups
