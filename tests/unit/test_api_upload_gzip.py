"""A Submit uploaded as the raw tar.gz body (Content-Type: application/gzip):
the same service and trust boundary as the multipart upload, 413 over the
limit, 415 for other media types."""

from __future__ import annotations

import secrets
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from exercises.models import Attempt, AttemptKind, AttemptStatus, SubmittedFiles
from labplatform.api.models import Scope
from tests.conftest import World, exercise_version_for
from tests.support.api import ApiClient, api_as, tar_gz

SUBMISSIONS = "/exercises/hello-module/submissions"
WORK = {
    "root/work/hello.c": b"int main;\n",
    "root/work/sub/Makefile": b"obj-m += hello.o\n",
    "root/elsewhere/secret": b"not declared\n",
}


@pytest.fixture(autouse=True)
def enqueued() -> Any:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def alice(world: World) -> ApiClient:
    exercise_version_for(world.hello.exercise)
    return api_as(world.alice)


def raw(client: ApiClient, body: bytes, content_type: str = "application/gzip", **kw: Any) -> Any:
    return client.post(SUBMISSIONS, data=body, content_type=content_type, **kw)


def problem_code(response: Any) -> str:
    assert response["Content-Type"] == "application/problem+json"
    return str(response.json()["code"])


@pytest.mark.parametrize("content_type", ["application/gzip", "application/x-gzip"])
def test_a_raw_tar_gz_is_submitted_and_cleaned(
    alice: ApiClient,
    enqueued: Any,
    django_capture_on_commit_callbacks: Any,
    content_type: str,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = raw(alice, tar_gz(WORK), content_type)
    assert response.status_code == 202, response.content
    attempt = Attempt.objects.get(pk=response.json()["id"])
    assert (attempt.kind, attempt.status, attempt.vm) == (
        AttemptKind.SUBMIT,
        AttemptStatus.QUEUED,
        None,
    )
    files = SubmittedFiles.objects.get(attempts=attempt)
    assert [f["path"] for f in files.listing] == ["/root/work/hello.c", "/root/work/sub/Makefile"]
    assert enqueued.call_args.args == ((attempt.pk,),)


def test_raw_and_multipart_store_the_same_files(alice: ApiClient) -> None:
    """Both bodies reach the one service: the same archive, the same result."""
    archive = tar_gz(WORK)
    by_raw = raw(alice, archive)
    assert by_raw.status_code == 202, by_raw.content
    Attempt.objects.update(status=AttemptStatus.GRADED)  # one open attempt at a time
    form = {"archive": SimpleUploadedFile("w.tar.gz", archive, content_type="application/gzip")}
    by_form = alice.post(SUBMISSIONS, data=form)
    assert by_form.status_code == 202, by_form.content
    assert by_raw.json()["files"]["sha256"] == by_form.json()["files"]["sha256"]
    assert by_raw.json()["id"] != by_form.json()["id"]


def test_a_raw_upload_goes_through_the_artifact_rules(alice: ApiClient) -> None:
    response = raw(alice, tar_gz({"root/work/big.c": b"x" * ((1 << 20) + 1)}))
    assert response.status_code == 422
    assert problem_code(response) == "files_refused"
    assert response.json()["detail"].startswith("Your /root/work is 1.0 MiB")
    assert not Attempt.objects.exists()


def test_a_raw_body_that_is_not_a_tar_gz_is_refused(alice: ApiClient) -> None:
    response = raw(alice, b"not a tarball")
    assert response.status_code == 422
    assert problem_code(response) == "files_refused"
    assert not Attempt.objects.exists()


def test_a_raw_body_over_the_limit_is_413(alice: ApiClient, settings: Any) -> None:
    settings.API_UPLOAD_MAX_BYTES = 2048
    body = tar_gz({"root/work/noise.c": secrets.token_bytes(4096)})  # incompressible
    response = raw(alice, body)
    assert response.status_code == 413
    assert problem_code(response) == "upload_too_large"
    assert response.json()["detail"] == (
        f"The archive is {len(body)} bytes; the limit is 2048 bytes."
    )
    assert not Attempt.objects.exists()


def test_a_raw_body_just_under_the_limit_is_taken(alice: ApiClient, settings: Any) -> None:
    body = tar_gz(WORK)
    settings.API_UPLOAD_MAX_BYTES = len(body)
    assert raw(alice, body).status_code == 202


@pytest.mark.parametrize(
    "content_type", ["application/x-tar", "text/plain", "application/json", "application/zip"]
)
def test_another_media_type_is_415(alice: ApiClient, content_type: str) -> None:
    response = raw(alice, tar_gz(WORK), content_type)
    assert response.status_code == 415
    assert problem_code(response) == "unsupported_media_type"
    assert "application/gzip" in response.json()["detail"]
    assert content_type in response.json()["detail"]
    assert not Attempt.objects.exists()


def test_a_form_without_the_archive_field_is_422(alice: ApiClient) -> None:
    form = {"files": SimpleUploadedFile("w.tar.gz", tar_gz(WORK))}
    response = alice.post(SUBMISSIONS, data=form)
    assert response.status_code == 422
    assert problem_code(response) == "validation_error"
    assert "archive" in response.json()["detail"]
    assert not Attempt.objects.exists()


def test_a_retried_raw_upload_creates_one_attempt(alice: ApiClient) -> None:
    body = tar_gz(WORK)
    first = raw(alice, body, headers={"Idempotency-Key": "upload-1"})
    again = raw(alice, body, headers={"Idempotency-Key": "upload-1"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Attempt.objects.count() == 1


def test_a_raw_upload_needs_the_submit_scope_and_your_exercise(world: World) -> None:
    exercise_version_for(world.hello.exercise)
    reader = raw(api_as(world.alice, Scope.READ), tar_gz(WORK))
    assert (reader.status_code, problem_code(reader)) == (403, "insufficient_scope")
    stranger = raw(api_as(world.bob), tar_gz(WORK))
    assert (stranger.status_code, problem_code(stranger)) == (404, "not_found")
    assert not Attempt.objects.exists()
