"""Webhooks: signed per Standard Webhooks (checked with the standardwebhooks
library's own verifier), retried with exponential backoff, sent for the
right people's attempts, logged, and testable from the settings page."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import pytest
from celery.exceptions import Retry
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from exercises.grading.engine import record
from exercises.grading.runner import Outcome
from exercises.models import Attempt, AttemptStatus
from labplatform.api.errors import ApiError
from labplatform.api.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from labplatform.api.services import webhook_emit, webhook_endpoint_create
from labplatform.api.tasks import webhook_deliver, webhook_try
from labplatform.api.webhooks import body_of, signed_headers
from tests.conftest import World, client_for
from tests.support.api import alice_lab_and_attempt
from vms.models import LabVM, VMKind, VMState


@pytest.fixture(autouse=True)
def local_receivers_allowed(settings: Any) -> None:
    """These tests deliver to receivers on 127.0.0.1, which a deployment
    refuses by default (tests/unit/test_webhook_ssrf.py proves it)."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.1 that answers 500 to its first
    ``failures`` requests, then 204, and keeps what it got."""

    failures: int
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(failures=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(500 if len(state.got) <= state.failures else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def emit(endpoint: WebhookEndpoint, capture: Any) -> WebhookDelivery:
    with capture(execute=False):  # the Celery task is run by hand below
        [delivery] = webhook_emit(
            endpoints=[endpoint], event_type=WebhookEvent.PING, data={"hello": "world"}
        )
    return delivery


def deliver_until_done(delivery: WebhookDelivery) -> list[float]:
    """Run the task's body as Celery would, sleeping the backoff between tries."""
    delays = []
    while (delay := webhook_try(delivery.pk)) is not None:
        delays.append(delay)
        time.sleep(delay)
    return delays


def test_signature_verifies_with_the_standardwebhooks_library(world: World) -> None:
    endpoint = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/")
    body = b'{"type":"webhook.test"}'
    headers = signed_headers(endpoint.secret, "msg_1", body)
    assert Webhook(endpoint.secret).verify(body, headers) == {"type": "webhook.test"}


def test_a_tampered_body_does_not_verify(world: World) -> None:
    endpoint = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/")
    body = b'{"score":10}'
    headers = signed_headers(endpoint.secret, "msg_1", body)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(b'{"score":100}', headers)


def test_an_old_timestamp_does_not_verify(world: World) -> None:
    endpoint = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/")
    body = b"{}"
    headers = signed_headers(endpoint.secret, "msg_1", body, timestamp=int(time.time()) - 600)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(body, headers)


def test_another_secret_does_not_verify(world: World) -> None:
    endpoint = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/")
    other = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/")
    headers = signed_headers(endpoint.secret, "msg_1", b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(other.secret).verify(b"{}", headers)


def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_try(
    world: World, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.05
    endpoint = webhook_endpoint_create(user=world.alice, url=receiver.url)
    delivery = emit(endpoint, django_capture_on_commit_callbacks)
    delays = deliver_until_done(delivery)
    assert delays == [0.05, 0.1]  # exponential: base, then twice the base
    assert len(receiver.got) == 3
    assert {headers["webhook-id"] for headers, _ in receiver.got} == {delivery.event_id}
    for headers, body in receiver.got:  # every try is signed afresh and verifies
        event = Webhook(endpoint.secret).verify(body, headers)
        assert event["type"] == "webhook.test"
        assert event["data"] == {"hello": "world"}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.tries == 3
    assert delivery.last_status_code == 204
    assert delivery.delivered_at is not None


def test_delivery_gives_up_after_the_last_try(
    world: World, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.01
    settings.WEBHOOK_MAX_TRIES = 2
    receiver.failures = 10
    delivery = emit(
        webhook_endpoint_create(user=world.alice, url=receiver.url),
        django_capture_on_commit_callbacks,
    )
    assert deliver_until_done(delivery) == [0.01]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.tries == 2
    assert delivery.last_error == "the receiver answered 500"
    assert webhook_try(delivery.pk) is None  # a late redelivery of the task does nothing
    assert len(receiver.got) == 2


def test_an_unreachable_receiver_is_logged_and_retried(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    delivery = emit(
        webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/closed"),
        django_capture_on_commit_callbacks,
    )
    assert webhook_try(delivery.pk) == 30.0
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.last_status_code is None
    assert delivery.last_error.startswith("could not reach the receiver")


def test_the_celery_task_retries_with_the_backoff(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    delivery = emit(
        webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/closed"),
        django_capture_on_commit_callbacks,
    )
    with (
        mock.patch.object(webhook_deliver, "retry", side_effect=Retry()) as retry,
        pytest.raises(Retry),
    ):
        webhook_deliver(delivery.pk)
    assert retry.call_args.kwargs == {"countdown": 30.0}


def test_emit_queues_the_task_after_commit(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    endpoint = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/")
    with (
        mock.patch.object(webhook_deliver, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        [delivery] = webhook_emit(endpoints=[endpoint], event_type=WebhookEvent.PING, data={"x": 1})
        delay.assert_not_called()
    delay.assert_called_once_with(delivery.pk)


# -- which attempts go to which endpoints ------------------------------------------


def test_a_finished_attempt_reaches_the_student_and_her_cohorts_instructor(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    _vm, attempt = alice_lab_and_attempt(world)
    Attempt.objects.filter(pk=attempt.pk).update(status=AttemptStatus.RUNNING)
    alices = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/alice")
    tess = webhook_endpoint_create(
        user=world.tess, url="http://127.0.0.1:9/tess", cohort=world.autumn
    )
    webhook_endpoint_create(user=world.bob, url="http://127.0.0.1:9/bob")
    webhook_endpoint_create(
        user=world.charlie, url="http://127.0.0.1:9/charlie", cohort=world.spring
    )
    with (
        mock.patch.object(webhook_deliver, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        record(attempt, Outcome(AttemptStatus.TIMED_OUT, reason="time ran out"))
    deliveries = WebhookDelivery.objects.all()
    assert {d.endpoint_id for d in deliveries} == {alices.pk, tess.pk}
    assert delay.call_count == 2
    payload = deliveries[0].payload
    assert payload["type"] == "attempt.finished"
    assert payload["data"]["id"] == attempt.pk
    assert payload["data"]["status"] == "timed_out"
    assert payload["data"]["reason"] == "time ran out"
    assert json.loads(body_of(deliveries[0]))["data"]["student"] == "alice"


def test_an_instructor_no_longer_teaching_gets_nothing(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    _vm, attempt = alice_lab_and_attempt(world)
    Attempt.objects.filter(pk=attempt.pk).update(status=AttemptStatus.RUNNING)
    webhook_endpoint_create(user=world.tess, url="http://127.0.0.1:9/tess", cohort=world.autumn)
    world.tess.enrolments.all().delete()
    with (
        mock.patch.object(webhook_deliver, "delay"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        record(attempt, Outcome(AttemptStatus.ERROR, reason="x"))
    assert not WebhookDelivery.objects.exists()


def test_only_an_instructor_registers_a_cohort_webhook(world: World) -> None:
    response = client_for(world.alice).post(
        "/settings/api/webhooks",
        {
            "url": "https://ci.example.org/hook",
            "cohort": world.autumn.pk,
            "events": ["attempt.finished"],
        },
    )
    assert response.status_code == 200
    assert response.context["webhook_form"].errors["cohort"]
    assert not WebhookEndpoint.objects.exists()


# -- the settings page --------------------------------------------------------------


def test_settings_page_registers_a_webhook_and_shows_its_secret_once(world: World) -> None:
    tess = client_for(world.tess)
    response = tess.post(
        "/settings/api/webhooks",
        {
            "url": "https://ci.example.org/hook",
            "cohort": world.autumn.pk,
            "events": ["attempt.finished"],
        },
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.cohort == world.autumn
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.secret in response.content.decode()
    assert endpoint.secret not in tess.get("/settings/api/").content.decode()


def test_send_a_test_event_logs_a_delivery(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    endpoint = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/")
    with (
        mock.patch.object(webhook_deliver, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client_for(world.alice).post(f"/settings/api/webhooks/{endpoint.pk}/test")
    assert response.status_code == 302
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == WebhookEvent.PING
    delay.assert_called_once_with(delivery.pk)
    page = client_for(world.alice).get("/settings/api/").content.decode()
    assert delivery.event_id in page


@pytest.mark.parametrize("action", ["test", "delete"])
@pytest.mark.parametrize("persona", ["bob", "tess", "charlie"])
def test_nobody_else_can_use_a_webhook(world: World, persona: str, action: str) -> None:
    endpoint = webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/")
    response = client_for(getattr(world, persona)).post(
        f"/settings/api/webhooks/{endpoint.pk}/{action}"
    )
    assert response.status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not WebhookDelivery.objects.exists()


# -- lab state changes, for those who ask ----------------------------------------------


def test_a_lab_state_change_reaches_the_owners_endpoints_that_asked(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    vm, _attempt = alice_lab_and_attempt(world)
    asked = webhook_endpoint_create(
        user=world.alice,
        url="http://127.0.0.1:9/labs",
        events=[WebhookEvent.LAB_STATE_CHANGED],
    )
    webhook_endpoint_create(user=world.alice, url="http://127.0.0.1:9/attempts-only")
    webhook_endpoint_create(
        user=world.tess,
        url="http://127.0.0.1:9/tess",
        cohort=world.autumn,
        events=[WebhookEvent.ATTEMPT_FINISHED, WebhookEvent.LAB_STATE_CHANGED],
    )
    with (
        mock.patch.object(webhook_deliver, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert vm.transition(VMState.RUNNING, VMState.STOPPING, progress="Saving the VM")
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.endpoint_id == asked.pk
    assert delivery.payload["type"] == "lab.state_changed"
    assert delivery.payload["data"]["id"] == str(vm.pk)
    assert delivery.payload["data"]["state"] == "stopping"
    assert delivery.payload["data"]["progress"] == "Saving the VM"
    delay.assert_called_once_with(delivery.pk)


def test_a_refused_transition_sends_nothing(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    vm, _attempt = alice_lab_and_attempt(world)
    webhook_endpoint_create(
        user=world.alice, url="http://127.0.0.1:9/", events=[WebhookEvent.LAB_STATE_CHANGED]
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert not vm.transition(VMState.STOPPED, VMState.RESUMING)
    assert callbacks == []
    assert not WebhookDelivery.objects.exists()


def test_a_grading_guest_is_nobodys_lab(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    vm, _attempt = alice_lab_and_attempt(world)
    LabVM.objects.filter(pk=vm.pk).update(kind=VMKind.GRADING)
    webhook_endpoint_create(
        user=world.alice, url="http://127.0.0.1:9/", events=[WebhookEvent.LAB_STATE_CHANGED]
    )
    with (
        mock.patch.object(webhook_deliver, "delay"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert vm.transition(VMState.RUNNING, VMState.DESTROYING)
    assert not WebhookDelivery.objects.exists()


def test_the_settings_page_subscribes_to_lab_changes(world: World) -> None:
    client_for(world.alice).post(
        "/settings/api/webhooks",
        {"url": "https://ci.example.org/hook", "events": ["attempt.finished", "lab.state_changed"]},
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["attempt.finished", "lab.state_changed"]
    assert endpoint.cohort is None


def test_an_endpoint_needs_an_event(world: World) -> None:
    response = client_for(world.alice).post(
        "/settings/api/webhooks", {"url": "https://ci.example.org/hook", "events": []}
    )
    assert response.context["webhook_form"].errors["events"]
    with pytest.raises(ApiError) as refused:
        webhook_endpoint_create(user=world.alice, url="https://x.org/", events=[])
    assert refused.value.code == "no_event"
    assert not WebhookEndpoint.objects.exists()
