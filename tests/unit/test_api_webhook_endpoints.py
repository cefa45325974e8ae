"""Webhooks through the API: the settings page's services, scoped tokens,
the secret shown once, paginated delivery logs, and 404 for other people's."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest

from labplatform.api.models import Scope, WebhookDelivery, WebhookEndpoint, WebhookEvent
from labplatform.api.services import webhook_emit, webhook_endpoint_create
from labplatform.api.tasks import webhook_deliver
from tests.conftest import World, client_for
from tests.support.api import ApiClient, api_as
from tests.support.dns import PUBLIC_ADDRESS, fake_dns

HOOK = "https://hooks.example.org/kernellab"


@pytest.fixture(autouse=True)
def public_names(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    fake_dns(monkeypatch, {"hooks.example.org": PUBLIC_ADDRESS, "lan.example.org": "10.0.0.8"})


def create(client: ApiClient, body: dict[str, Any], **kwargs: Any) -> Any:
    return client.post(
        "/webhooks", data=json.dumps(body), content_type="application/json", **kwargs
    )


def problem_code(response: Any) -> str:
    assert response["Content-Type"] == "application/problem+json"
    return str(response.json()["code"])


def alices_webhook(world: World) -> WebhookEndpoint:
    return webhook_endpoint_create(user=world.alice, url=HOOK)


# -- create ----------------------------------------------------------------------------


def test_create_answers_the_secret_once(world: World) -> None:
    alice = api_as(world.alice, Scope.READ, Scope.WEBHOOKS)
    response = create(alice, {"url": HOOK, "description": "CI of my fork"})
    assert response.status_code == 201, response.content
    body = response.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["id"] == endpoint.pk
    assert body["secret"] == endpoint.secret
    assert body["secret"].startswith("whsec_")
    assert (endpoint.owner, endpoint.url, endpoint.description) == (
        world.alice,
        HOOK,
        "CI of my fork",
    )
    assert endpoint.events == ["attempt.finished"]  # the default
    assert endpoint.cohort is None
    listed = alice.get("/webhooks").json()["items"]
    assert [w["id"] for w in listed] == [endpoint.pk]
    assert "secret" not in listed[0]
    assert "secret" not in alice.get(f"/webhooks/{endpoint.pk}").json()
    assert endpoint.secret not in alice.get("/webhooks").content.decode()


def test_create_subscribes_to_lab_changes(world: World) -> None:
    response = create(
        api_as(world.alice, Scope.WEBHOOKS),
        {"url": HOOK, "events": ["lab.state_changed", "attempt.finished"]},
    )
    assert response.status_code == 201
    assert WebhookEndpoint.objects.get().events == ["attempt.finished", "lab.state_changed"]


@pytest.mark.parametrize("events", [[], ["webhook.test"], ["nonsense"]])
def test_create_refuses_events_one_cannot_subscribe_to(world: World, events: list[str]) -> None:
    response = create(api_as(world.alice, Scope.WEBHOOKS), {"url": HOOK, "events": events})
    assert response.status_code == 422
    assert problem_code(response) == "validation_error"
    assert not WebhookEndpoint.objects.exists()


def test_create_refuses_a_url_of_a_private_network(world: World) -> None:
    response = create(api_as(world.alice, Scope.WEBHOOKS), {"url": "https://lan.example.org/"})
    assert response.status_code == 422
    assert problem_code(response) == "webhook_url_refused"
    assert "10.0.0.8" in response.json()["detail"]
    assert not WebhookEndpoint.objects.exists()


def test_an_instructor_registers_a_cohort_webhook(world: World) -> None:
    tess = api_as(world.tess, Scope.WEBHOOKS, Scope.COHORT_ADMIN)
    response = create(tess, {"url": HOOK, "cohort_id": world.autumn.pk})
    assert response.status_code == 201, response.content
    assert response.json()["cohort_id"] == world.autumn.pk
    assert response.json()["cohort"] == "Autumn"
    assert WebhookEndpoint.objects.get().cohort == world.autumn


def test_a_cohort_webhook_needs_the_cohort_admin_scope_too(world: World) -> None:
    response = create(
        api_as(world.tess, Scope.WEBHOOKS), {"url": HOOK, "cohort_id": world.autumn.pk}
    )
    assert response.status_code == 403
    assert problem_code(response) == "insufficient_scope"
    assert "cohort-admin" in response.json()["detail"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("persona", ["alice", "bob", "charlie"])
def test_only_the_cohorts_instructor_registers_its_webhook(world: World, persona: str) -> None:
    """alice studies in autumn, bob and charlie are elsewhere: 404, as for
    a cohort that does not exist."""
    client = api_as(getattr(world, persona))
    response = create(client, {"url": HOOK, "cohort_id": world.autumn.pk})
    assert response.status_code == 404
    assert problem_code(response) == "not_found"
    assert not WebhookEndpoint.objects.exists()


def test_a_repeated_idempotency_key_creates_one_webhook(world: World) -> None:
    alice = api_as(world.alice, Scope.WEBHOOKS)
    key = {"Idempotency-Key": "hook-1"}
    first = create(alice, {"url": HOOK}, headers=key)
    again = create(alice, {"url": HOOK}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert WebhookEndpoint.objects.count() == 1
    other = create(alice, {"url": HOOK + "/other"}, headers=key)
    assert other.status_code == 422
    assert problem_code(other) == "idempotency_key_reused"
    assert WebhookEndpoint.objects.count() == 1


# -- read, delete, test --------------------------------------------------------------


def test_list_is_paginated_and_only_yours(world: World) -> None:
    mine = [webhook_endpoint_create(user=world.alice, url=f"{HOOK}/{n}") for n in range(3)]
    webhook_endpoint_create(user=world.bob, url=HOOK)
    alice = api_as(world.alice, Scope.READ)
    first = alice.get("/webhooks?limit=2").json()
    assert (first["count"], first["next_offset"]) == (3, 2)
    rest = alice.get("/webhooks?limit=2&offset=2").json()
    assert rest["next_offset"] is None
    listed = [w["id"] for w in first["items"] + rest["items"]]
    assert listed == [e.pk for e in reversed(mine)]  # newest first


def test_delete_removes_it(world: World) -> None:
    endpoint = alices_webhook(world)
    alice = api_as(world.alice, Scope.WEBHOOKS, Scope.READ)
    response = alice.request("DELETE", f"/webhooks/{endpoint.pk}")
    assert response.status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert alice.get(f"/webhooks/{endpoint.pk}").status_code == 404


def test_send_a_test_event_queues_a_logged_delivery(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    endpoint = alices_webhook(world)
    with (
        mock.patch.object(webhook_deliver, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = api_as(world.alice, Scope.WEBHOOKS).post(f"/webhooks/{endpoint.pk}/test")
    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.get()
    assert response.json()["id"] == delivery.pk
    assert response.json()["event_type"] == "webhook.test"
    assert response.json()["status"] == "pending"
    assert delivery.payload["data"]["endpoint"] == HOOK
    delay.assert_called_once_with(delivery.pk)


def test_deliveries_are_paginated_newest_first(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    endpoint = alices_webhook(world)
    with django_capture_on_commit_callbacks(execute=False):
        sent = [
            webhook_emit(endpoints=[endpoint], event_type=WebhookEvent.PING, data={"n": n})[0]
            for n in range(3)
        ]
    alice = api_as(world.alice, Scope.READ)
    page = alice.get(f"/webhooks/{endpoint.pk}/deliveries?limit=2").json()
    assert page["count"] == 3
    assert [d["event_id"] for d in page["items"]] == [sent[2].event_id, sent[1].event_id]
    assert page["next_offset"] == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/webhooks/{id}"),
        ("DELETE", "/webhooks/{id}"),
        ("GET", "/webhooks/{id}/deliveries"),
        ("POST", "/webhooks/{id}/test"),
    ],
)
@pytest.mark.parametrize("persona", ["bob", "tess", "charlie"])
def test_other_peoples_webhooks_are_404(world: World, persona: str, method: str, path: str) -> None:
    """Even tess, who teaches alice, cannot see or use alice's own webhook."""
    endpoint = alices_webhook(world)
    response = api_as(getattr(world, persona)).request(method, path.format(id=endpoint.pk))
    assert response.status_code == 404
    assert problem_code(response) == "not_found"
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not WebhookDelivery.objects.exists()


def test_a_read_token_lists_but_does_not_create(world: World) -> None:
    reader = api_as(world.alice, Scope.READ)
    assert reader.get("/webhooks").status_code == 200
    response = create(reader, {"url": HOOK})
    assert response.status_code == 403
    assert "webhooks" in response.json()["detail"]
    assert not WebhookEndpoint.objects.exists()


def test_the_settings_page_and_the_api_show_the_same_webhooks(world: World) -> None:
    """One service behind both: a webhook made on the page is in the API."""
    client_for(world.alice).post(
        "/settings/api/webhooks",
        {"url": HOOK, "description": "from the page", "events": ["attempt.finished"]},
    )
    [item] = api_as(world.alice, Scope.READ).get("/webhooks").json()["items"]
    assert (item["url"], item["description"]) == (HOOK, "from the page")
