"""Idempotency-Key: a retried create returns the first answer and creates
nothing; the same key with another request is refused."""

from __future__ import annotations

import json
import secrets
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from exercises.models import Attempt, SubmittedFiles
from labplatform.api.models import IdempotencyRecord
from tests.conftest import World, exercise_version_for
from tests.support.api import ApiClient, tar_gz, token_for
from vms.models import LabVM


@pytest.fixture(autouse=True)
def no_enqueue() -> Any:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def alice(world: World) -> ApiClient:
    exercise_version_for(world.hello.exercise)
    return ApiClient(token_for(world.alice))


def upload(client: ApiClient, key: str | None, content: bytes) -> Any:
    archive = SimpleUploadedFile(
        "work.tar.gz", tar_gz({"root/work/hello.c": content}), content_type="application/gzip"
    )
    headers = {"Idempotency-Key": key} if key is not None else {}
    # A fixed multipart boundary: a client retrying sends the very same bytes.
    return client.post(
        "/exercises/hello-module/submissions",
        data={"archive": archive},
        headers=headers,
    )


def test_a_retried_upload_returns_the_first_answer_and_creates_nothing(
    world: World, alice: ApiClient
) -> None:
    first = upload(alice, "key-1", b"int x;\n")
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first
    again = upload(alice, "key-1", b"int x;\n")
    assert again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert json.loads(again.content) == json.loads(first.content)
    assert Attempt.objects.count() == 1
    assert SubmittedFiles.objects.count() == 1


def test_without_the_key_a_second_upload_is_a_second_request(
    world: World, alice: ApiClient
) -> None:
    assert upload(alice, None, b"int x;\n").status_code == 202
    second = upload(alice, None, b"int x;\n")
    assert second.status_code == 409  # the first is still being graded
    assert json.loads(second.content)["code"] == "attempt_open"


def test_the_same_key_with_another_body_is_refused(world: World, alice: ApiClient) -> None:
    assert upload(alice, "key-1", b"int x;\n").status_code == 202
    other = upload(alice, "key-1", b"int y;\n")
    assert other.status_code == 422
    assert other["Content-Type"] == "application/problem+json"
    assert json.loads(other.content)["code"] == "idempotency_key_reused"
    assert Attempt.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_refused(world: World, alice: ApiClient) -> None:
    assert upload(alice, "key-1", b"int x;\n").status_code == 202
    lab = alice.post("/exercises/hello-module/lab", headers={"Idempotency-Key": "key-1"})
    assert lab.status_code == 422
    assert json.loads(lab.content)["code"] == "idempotency_key_reused"
    assert not LabVM.objects.exists()


def test_a_key_still_running_is_409(world: World, alice: ApiClient) -> None:
    first = alice.post("/exercises/hello-module/lab", headers={"Idempotency-Key": "k"})
    assert first.status_code == 202
    # As if the first request were still being served.
    IdempotencyRecord.objects.filter(key="k").update(response_status=None)
    busy = alice.post("/exercises/hello-module/lab", headers={"Idempotency-Key": "k"})
    assert busy.status_code == 409
    assert json.loads(busy.content)["code"] == "idempotency_key_in_use"
    assert LabVM.objects.count() == 1


def test_a_refused_request_is_not_remembered(world: World, alice: ApiClient) -> None:
    """A failure created nothing: the same key may be retried, and runs again."""
    LabVM.objects.all().delete()
    world.hello.exercise.current_version = None
    world.hello.exercise.save()
    refused = alice.post(
        "/exercises/hello-module/attempts",
        data={"kind": "submit"},
        content_type="application/json",
        headers={"Idempotency-Key": "k"},
    )
    assert refused.status_code == 409
    assert not IdempotencyRecord.objects.exists()


def test_keys_are_per_token(world: World, alice: ApiClient) -> None:
    assert upload(alice, "shared", b"int x;\n").status_code == 202
    bob = ApiClient(token_for(world.bob))
    response = bob.post("/exercises/strace-syscalls/lab", headers={"Idempotency-Key": "shared"})
    assert response.status_code == 202
    assert LabVM.objects.filter(owner=world.bob).count() == 1


def test_an_overlong_key_is_refused(world: World, alice: ApiClient) -> None:
    response = alice.post("/exercises/hello-module/lab", headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 422
    assert json.loads(response.content)["code"] == "idempotency_key_invalid"


def test_an_upload_larger_than_a_form_is_fingerprinted_and_reaches_the_rules(
    world: World, alice: ApiClient
) -> None:
    """3 MiB is over Django's limit for form data (2.5 MiB), not over the
    API's for uploads: the key's fingerprint reads it and the view still
    gets the file, which the exercise's caps then refuse."""
    big = secrets.token_bytes(3 << 20)
    first = upload(alice, "big", big)
    assert first.status_code == 422, first.content
    assert json.loads(first.content)["code"] == "files_refused"
    assert not IdempotencyRecord.objects.exists()  # a refusal is not remembered


def test_a_request_over_the_upload_limit_is_413_before_it_is_read(
    world: World, alice: ApiClient, settings: Any
) -> None:
    settings.API_UPLOAD_MAX_BYTES = 1024
    response = upload(alice, "k", secrets.token_bytes(128 * 1024))
    assert response.status_code == 413
    assert json.loads(response.content)["code"] == "upload_too_large"
