"""The SSRF guard: by default a webhook goes to public addresses only, at
registration (settings page and API) and again at every delivery, against
the address actually connected to; redirects are never followed."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from labplatform.api import ssrf
from labplatform.api.errors import ApiError
from labplatform.api.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from labplatform.api.services import webhook_emit, webhook_endpoint_create
from labplatform.api.tasks import webhook_try
from tests.conftest import World, client_for
from tests.support.api import api_as
from tests.support.dns import PUBLIC_ADDRESS, fake_dns


@pytest.fixture(autouse=True)
def default_policy(settings: Any) -> None:
    """What a deployment runs with unless it says otherwise."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False


@dataclass
class Receiver:
    """An HTTP receiver on a loopback address that answers ``status`` (and
    ``location``, for a redirect) and keeps the paths it was sent."""

    host: str
    status: int = 204
    location: str = ""
    got: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks"


@contextlib.contextmanager
def serving(state: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            state.got.append(self.path)
            self.send_response(state.status)
            if state.location:
                self.send_header("Location", state.location)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((state.host, state.port), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver("127.0.0.1")) as state:
        yield state


@pytest.fixture
def second_receiver(receiver: Receiver) -> Iterator[Receiver]:
    """On 127.0.0.2 (all of 127/8 is loopback on Linux), same port as the first."""
    with serving(Receiver("127.0.0.2", port=receiver.port)) as state:
        yield state


def deliver_once(endpoint: WebhookEndpoint, capture: Any) -> WebhookDelivery:
    with capture(execute=False):  # the task is run by hand
        [delivery] = webhook_emit(
            endpoints=[endpoint], event_type=WebhookEvent.PING, data={"hello": "world"}
        )
    webhook_try(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def registered(user: Any, url: str) -> WebhookEndpoint:
    """An endpoint stored as if it had passed registration earlier (the
    tests below change what its name resolves to afterwards)."""
    return WebhookEndpoint.objects.create(owner=user, url=url, secret="whsec_" + "A" * 44)


# -- which addresses are public ------------------------------------------------------

NOT_PUBLIC = [
    ("127.0.0.1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "CGNAT"),
    ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 (an address under test, not a bind)
    ("240.0.0.1", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"),
    ("ff02::1", "multicast"),
    ("fec0::1", "site-local"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
]


@pytest.mark.parametrize(("address", "kind"), NOT_PUBLIC)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    reason = ssrf.non_public_reason(ipaddress.ip_address(address))
    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize(
    "address", [PUBLIC_ADDRESS, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert ssrf.non_public_reason(ipaddress.ip_address(address)) is None


# -- at registration -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.1.1/hook",
    ],
)
def test_registration_refuses_a_non_public_address(world: World, url: str) -> None:
    with pytest.raises(ApiError) as refused:
        webhook_endpoint_create(user=world.alice, url=url)
    assert refused.value.status == 422
    assert refused.value.code == "webhook_url_refused"
    assert "public addresses only" in refused.value.detail
    assert not WebhookEndpoint.objects.exists()


def test_registration_refuses_a_name_that_resolves_to_a_private_address(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"hooks.example.org": "10.20.30.40"})
    with pytest.raises(ApiError) as refused:
        webhook_endpoint_create(user=world.alice, url="https://hooks.example.org/kernellab")
    assert refused.value.detail == (
        "hooks.example.org resolves to 10.20.30.40, which is a private address: "
        "webhooks go to public addresses only."
    )


def test_one_private_address_among_public_ones_is_enough_to_refuse(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([PUBLIC_ADDRESS, "192.168.0.7"])

    real = socket.getaddrinfo

    def both(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [real(next(answers), port, *args, **kwargs)[0] for _ in range(2)]

    monkeypatch.setattr(socket, "getaddrinfo", both)
    with pytest.raises(ApiError) as refused:
        webhook_endpoint_create(user=world.alice, url="https://hooks.example.org/")
    assert "192.168.0.7" in refused.value.detail


def test_registration_accepts_a_name_that_resolves_to_a_public_address(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = fake_dns(monkeypatch, {"hooks.example.org": PUBLIC_ADDRESS})
    endpoint = webhook_endpoint_create(user=world.alice, url="https://hooks.example.org/k")
    assert endpoint.url == "https://hooks.example.org/k"
    assert lookups == ["hooks.example.org"]


def test_registration_refuses_a_name_that_does_not_resolve(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nothing(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nothing)
    with pytest.raises(ApiError) as refused:
        webhook_endpoint_create(user=world.alice, url="https://nowhere.example.org/")
    assert refused.value.detail == (
        "The host nowhere.example.org does not resolve (Name or service not known)."
    )


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://hooks.example.org/", "not a valid http(s) URL"),
        ("file:///etc/passwd", "not a valid http(s) URL"),
        ("https://ci:hunter2@hooks.example.org/", "may not carry a user name or password"),
    ],
)
def test_scheme_and_credentials_are_refused_whatever_the_network_setting(
    world: World, settings: Any, url: str, says: str, allow_private: bool
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = allow_private
    with pytest.raises(ApiError) as refused:
        webhook_endpoint_create(user=world.alice, url=url)
    assert says in refused.value.detail


def test_the_setting_lets_a_development_machine_use_a_local_receiver(
    world: World, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    endpoint = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/hooks")
    assert endpoint.pk is not None


def test_the_settings_page_shows_why_a_url_is_refused(world: World) -> None:
    response = client_for(world.alice).post(
        "/settings/api/webhooks",
        {"url": "http://169.254.169.254/latest/meta-data/", "events": ["attempt.finished"]},
    )
    assert response.status_code == 200
    [error] = response.context["webhook_form"].errors["url"]
    assert error.startswith("169.254.169.254 is a link-local address")
    assert not WebhookEndpoint.objects.exists()


def test_the_api_refuses_a_private_url_with_a_problem(world: World) -> None:
    response = api_as(world.alice).post(
        "/webhooks", data={"url": "http://[::1]:8000/hook"}, content_type="application/json"
    )
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "webhook_url_refused"
    assert not WebhookEndpoint.objects.exists()


# -- at delivery ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254"])
def test_delivery_refuses_a_non_public_address_without_connecting(
    world: World, django_capture_on_commit_callbacks: Any, host: str
) -> None:
    endpoint = registered(world.alice, f"http://{host}:9/hooks")
    delivery = deliver_once(endpoint, django_capture_on_commit_callbacks)
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.last_status_code is None
    assert delivery.last_error.startswith("refused: ")
    assert "public addresses only" in delivery.last_error


def test_a_name_rebound_to_loopback_after_registration_gets_nothing(
    world: World,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Registered while the name was public; now it points at a receiver
    listening on 127.0.0.1, which would answer if it were reached."""
    answer = {"address": PUBLIC_ADDRESS}
    fake_dns(monkeypatch, {"hooks.example.org": lambda: answer["address"]})
    endpoint = webhook_endpoint_create(
        user=world.alice, url=f"http://hooks.example.org:{receiver.port}/hooks"
    )
    answer["address"] = "127.0.0.1"
    delivery = deliver_once(endpoint, django_capture_on_commit_callbacks)
    assert receiver.got == []
    assert delivery.last_error == (
        "refused: hooks.example.org resolves to 127.0.0.1, which is a loopback address: "
        "webhooks go to public addresses only."
    )


def test_delivery_connects_to_the_address_it_checked(
    world: World,
    receiver: Receiver,
    second_receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """DNS rebinding: the first answer passes the check, a second lookup
    would answer a private address. 127.0.0.1 stands for a public receiver
    here (this machine has no other), 127.0.0.2 for a private one."""
    monkeypatch.setattr(
        ssrf,
        "non_public_reason",
        lambda ip: None if str(ip) == "127.0.0.1" else "a private address",
    )
    answers = iter(["127.0.0.1", "127.0.0.2", "127.0.0.2"])
    lookups = fake_dns(monkeypatch, {"hooks.example.org": lambda: next(answers)})
    endpoint = registered(world.alice, f"http://hooks.example.org:{receiver.port}/hooks")
    delivery = deliver_once(endpoint, django_capture_on_commit_callbacks)
    assert lookups == ["hooks.example.org"]  # resolved once, then connected to that address
    assert receiver.got == ["/hooks"]
    assert delivery.status == DeliveryStatus.DELIVERED


def test_the_peer_is_checked_before_anything_is_sent(receiver: Receiver) -> None:
    """Even handed a loopback address to connect to, the connection refuses
    its peer rather than send to it."""
    infos = socket.getaddrinfo("127.0.0.1", receiver.port, type=socket.SOCK_STREAM)
    with pytest.raises(ssrf.UnsafeWebhookUrl, match="loopback"):
        ssrf._connect_pinned("127.0.0.1", infos, ("127.0.0.1", receiver.port), 5)
    assert receiver.got == []


def test_a_redirect_to_a_private_address_is_not_followed(
    world: World,
    receiver: Receiver,
    second_receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The receiver (127.0.0.1 standing for a public one) answers 307 to a
    private address where another receiver listens: it gets nothing."""
    monkeypatch.setattr(
        ssrf,
        "non_public_reason",
        lambda ip: None if str(ip) == "127.0.0.1" else "a private address",
    )
    receiver.status = 307
    receiver.location = second_receiver.url
    delivery = deliver_once(
        registered(world.alice, receiver.url), django_capture_on_commit_callbacks
    )
    assert receiver.got == ["/hooks"]
    assert second_receiver.got == []
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.last_status_code == 307
    assert "a redirect, which webhooks never follow" in delivery.last_error


def test_no_redirect_is_followed_even_where_private_networks_are_allowed(
    world: World,
    settings: Any,
    receiver: Receiver,
    second_receiver: Receiver,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    receiver.status = 302
    receiver.location = second_receiver.url
    delivery = deliver_once(
        registered(world.alice, receiver.url), django_capture_on_commit_callbacks
    )
    assert (receiver.got, second_receiver.got) == (["/hooks"], [])
    assert delivery.last_status_code == 302
    assert delivery.status != DeliveryStatus.DELIVERED
