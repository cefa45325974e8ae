"""Schemathesis against the live test server with a valid token: no 5xx and
no answer that breaks the OpenAPI schema, for every operation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from labplatform.api.models import WebhookEndpoint
from labplatform.api.services import webhook_endpoint_create
from tests.conftest import World, exercise_version_for
from tests.support.api import alice_lab_and_attempt, token_for
from tests.support.dns import PUBLIC_ADDRESS, fake_dns

# "Schema-valid data must be accepted" cannot hold for this API: a schema
# cannot say "a tar.gz the exercise accepts" or "a VM that is running", and
# refusing those with 409/422 problems is the point. Every other check runs
# (no 5xx, status codes, content types, headers and bodies as documented,
# invalid data refused, auth not ignored...).
DOMAIN_REFUSALS = [schemathesis.checks.positive_data_acceptance]
# Bounded so that the whole run stays well under two minutes on this machine.
EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def quiet_api() -> Iterator[None]:
    # Labs and grading are queued after commit: nothing may reach a real worker.
    with mock.patch("celery.app.task.Task.apply_async"):
        yield


@pytest.mark.django_db(transaction=True)
def test_no_server_error_and_no_schema_violation(
    world: World,
    live_server: Any,
    quiet_api: None,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.API_RATE_LIMIT = "100000/min"
    exercise_version_for(world.hello.exercise)
    vm, attempt = alice_lab_and_attempt(world)  # something to find
    fake_dns(monkeypatch, {"hooks.example.org": PUBLIC_ADDRESS})

    def alices_webhook() -> int:
        """Alice's webhook, made again once a DELETE case removed it."""
        existing = WebhookEndpoint.objects.filter(owner=world.alice).first()
        if existing is None:
            existing = webhook_endpoint_create(user=world.alice, url="https://hooks.example.org/")
        return existing.pk

    # Half of the cases aim at things that exist (random slugs and ids are all 404).
    real = {
        "slug": "hello-module",
        "vm_id": str(vm.pk),
        "attempt_id": attempt.pk,
        "cohort_id": world.autumn.pk,
        "webhook_id": alices_webhook(),
    }
    alice = {"Authorization": f"Bearer {token_for(world.alice)}"}
    tess = {"Authorization": f"Bearer {token_for(world.tess)}"}  # teaches autumn
    document = json.loads(Client().get("/api/v1/openapi.json").content)
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()

        @given(case=operation.as_strategy(), aim=st.booleans())
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any, aim: bool) -> None:
            if aim and case.path_parameters:
                real["webhook_id"] = alices_webhook()
                case.path_parameters = {name: real[name] for name in case.path_parameters}
            headers = tess if "/cohorts" in case.path else alice
            if case.headers and "Idempotency-Key" in case.headers:
                # A new key per request, as a client makes them: generated keys
                # repeat across different bodies, which is rightly refused (422)
                # and tested on its own in tests/unit/test_api_idempotency.py.
                case.headers["Idempotency-Key"] = str(uuid.uuid4())
            response = case.call_and_validate(
                base_url=live_server.url, headers=headers, excluded_checks=DOMAIN_REFUSALS
            )
            answered.setdefault(case.operation.label, set()).add(response.status_code)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    # Every operation was exercised, and the valid token got real answers.
    assert len(answered) == len(document_operations(document))
    assert 200 in answered["GET /api/v1/exercises/{slug}"]
    assert 200 in answered["GET /api/v1/cohorts/{cohort_id}/gradebook.csv"]
    assert 409 in answered["POST /api/v1/labs/{vm_id}/resume"]  # a real VM, not stopped
    assert 422 in answered["POST /api/v1/exercises/{slug}/submissions"]
    assert 200 in answered["GET /api/v1/webhooks/{webhook_id}/deliveries"]
    assert 202 in answered["POST /api/v1/webhooks/{webhook_id}/test"]
    assert 204 in answered["DELETE /api/v1/webhooks/{webhook_id}"]
    assert 422 in answered["POST /api/v1/webhooks"]
    print({label: sorted(codes) for label, codes in answered.items()})


def document_operations(document: dict[str, Any]) -> list[str]:
    return [f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item]
