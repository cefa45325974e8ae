"""Where webhooks may go: public receivers only (the SSRF guard).

A webhook URL is chosen by a user, but the POST is made by the server: left
unguarded, a URL could make KernelLab reach its own database, a hypervisor's
admin port or the cloud's metadata service (169.254.169.254). So:

- at registration (settings page and API, both through
  ``services.webhook_endpoint_create``), the URL must be http(s), carry no
  user name or password, and its host must resolve to public addresses only;
- at every delivery, the host is resolved once, every address is checked,
  and the connection is made to a checked address while the Host header and
  TLS SNI keep the name: a DNS answer changed since registration, or between
  the check and the connection (DNS rebinding), reaches nothing private. The
  socket's peer is checked again before a byte is sent;
- redirects are never followed (http.client does not follow them).

WEBHOOK_ALLOW_PRIVATE_NETWORKS lifts the address rule, for a development
machine or a test whose receiver listens on 127.0.0.1; the other rules stay.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# One getaddrinfo() entry: family, type, proto, canonical name, socket address.
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]

SCHEMES = ("http", "https")
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeWebhookUrl(Exception):
    """A URL (or the address its host resolves to) webhooks may not go to."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (::ffff:a.b.c.d, 6to4, NAT64),
    which is where a packet to it ends up."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def non_public_reason(ip: IPAddress) -> str | None:
    """Why a webhook may not go to this address (None: it is public)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = non_public_reason(embedded)
            return f"{reason} (inside {ip})" if reason else None
        if ip.is_site_local:
            return "a site-local address"
    checks = [
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (where cloud metadata services live)"),
        (ip.is_multicast, "a multicast address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in SHARED_ADDRESS_SPACE, "a CGNAT address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a public address"),
    ]
    return next((reason for refused, reason in checks if refused), None)


def _private_networks_allowed() -> bool:
    return bool(settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # the request target: path and query


def parse_target(url: str) -> Target:
    """The scheme, host, port and path of a webhook URL; refuses a scheme
    other than http(s), credentials in the URL, and a URL without a host."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookUrl(f"{url!r} is not a valid URL: {exc}.") from exc
    if parts.scheme not in SCHEMES:
        raise UnsafeWebhookUrl("Only http:// and https:// URLs can receive webhooks.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl(
            "A webhook URL may not carry a user name or password: "
            "receivers authenticate events by their signature."
        )
    if not parts.hostname:
        raise UnsafeWebhookUrl("The webhook URL has no host.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default_port, path)


def resolve(target: Target) -> list[AddrInfo]:
    """The addresses to connect to, each checked: UnsafeWebhookUrl if any
    is not public (unless private networks are allowed); OSError
    (socket.gaierror) if the name does not resolve."""
    infos: list[AddrInfo] = socket.getaddrinfo(
        target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    if not infos:
        raise socket.gaierror(f"no address for {target.host}")
    if not _private_networks_allowed():
        for info in infos:
            _check_address(target.host, info[4][0])
    return infos


def _check_address(host: str, address: str) -> None:
    ip = ipaddress.ip_address(address)
    reason = non_public_reason(ip)
    if reason is not None:
        shown = host if host == str(ip) else f"{host} resolves to {ip}, which"
        raise UnsafeWebhookUrl(f"{shown} is {reason}: webhooks go to public addresses only.")


def webhook_url_check(url: str) -> None:
    """The rules a URL must pass to be registered (UnsafeWebhookUrl with a
    sentence for people otherwise)."""
    try:
        URLValidator(schemes=list(SCHEMES))(url)
    except ValidationError as exc:
        raise UnsafeWebhookUrl(f"{url!r} is not a valid http(s) URL.") from exc
    target = parse_target(url)
    if _private_networks_allowed():
        return
    try:
        resolve(target)
    except OSError as exc:
        raise UnsafeWebhookUrl(
            f"The host {target.host} does not resolve ({getattr(exc, 'strerror', None) or exc})."
        ) from exc


def _connect_pinned(
    host: str,
    infos: list[AddrInfo],
    _address: tuple[str, int],
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """socket.create_connection's stand-in: connects to the checked
    addresses only (the name http.client passes in is not resolved again),
    then checks the peer it got."""
    last_error: OSError = OSError(f"no address to connect to for {host}")
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            if not _private_networks_allowed():
                _check_address(host, sock.getpeername()[0])
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last_error


class PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, infos: list[AddrInfo], *, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._create_connection = functools.partial(_connect_pinned, target.host, infos)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked address, verified against the URL's host name (SNI
    and certificate check use the name, not the address)."""

    def __init__(self, target: Target, infos: list[AddrInfo], *, timeout: float) -> None:
        super().__init__(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
        self._create_connection = functools.partial(_connect_pinned, target.host, infos)


def open_connection(url: str, *, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection to the URL's receiver, pinned to checked addresses, and
    the path to request. Raises UnsafeWebhookUrl, or OSError when the host
    does not resolve."""
    target = parse_target(url)
    infos = resolve(target)
    kind = PinnedHTTPSConnection if target.scheme == "https" else PinnedHTTPConnection
    return kind(target, infos, timeout=timeout), target.path
