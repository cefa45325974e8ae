"""What each endpoint answers to its rightful caller."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from exercises.models import Attempt, AttemptKind, AttemptStatus, SubmittedFiles
from labplatform.api.models import Scope
from labplatform.courses.services import assignment_set
from tests.conftest import World, client_for, exercise_version_for, make_exercise
from tests.support.api import ApiClient, alice_lab_and_attempt, api_as, tar_gz
from vms.models import LabVM, VMState


@pytest.fixture
def enqueued() -> Any:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def alice(world: World) -> ApiClient:
    return api_as(world.alice)


def upload(client: ApiClient, files: dict[str, bytes], **kwargs: Any) -> Any:
    archive = SimpleUploadedFile("work.tar.gz", tar_gz(files), content_type="application/gzip")
    return client.post("/exercises/hello-module/submissions", data={"archive": archive}, **kwargs)


def problem(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/problem+json"
    return dict(json.loads(response.content))


# -- exercises -----------------------------------------------------------------------


def test_exercise_list_is_paginated(world: World, alice: ApiClient) -> None:
    for n in range(3):
        assignment_set(
            cohort=world.autumn,
            exercise=make_exercise(f"extra-{n}", f"Extra {n}", "extras"),
            opens_at=world.hello.opens_at,
            due_at=world.hello.due_at,
            closes_at=world.hello.closes_at,
        )
    first = alice.get("/exercises?limit=3").json()
    assert first["count"] == 4
    assert len(first["items"]) == 3
    assert first["next_offset"] == 3
    second = alice.get("/exercises?limit=3&offset=3").json()
    assert len(second["items"]) == 1
    assert second["next_offset"] is None
    slugs = {i["slug"] for i in first["items"] + second["items"]}
    assert slugs == {"hello-module", "extra-0", "extra-1", "extra-2"}
    assert "strace-syscalls" not in slugs  # bob's


def test_exercise_list_filters_by_topic(world: World, alice: ApiClient) -> None:
    assert [i["slug"] for i in alice.get("/exercises?topic=modules").json()["items"]] == [
        "hello-module"
    ]
    assert alice.get("/exercises?topic=none").json()["count"] == 0


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "limit=x"])
def test_page_bounds_are_validated(world: World, alice: ApiClient, query: str) -> None:
    response = alice.get(f"/exercises?{query}")
    assert response.status_code == 422
    assert problem(response)["code"] == "validation_error"


def test_exercise_detail_says_what_a_submit_grades(world: World, alice: ApiClient) -> None:
    exercise_version_for(world.hello.exercise)
    body = alice.get("/exercises/hello-module").json()
    assert body["title"] == "Hello, kernel module"
    assert body["assignment"]["status"] == "open"
    assert body["assignment"]["cohort"] == "Autumn"
    assert [a["path"] for a in body["artifacts"]] == ["/root/work"]
    assert body["artifacts"][0]["max_bytes"] == 1 << 20


# -- labs ------------------------------------------------------------------------------


def test_lab_start_creates_the_vm_and_queues_it(
    world: World, alice: ApiClient, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post("/exercises/hello-module/lab")
    assert response.status_code == 202
    body = response.json()
    vm = LabVM.objects.get(owner=world.alice)
    assert body["id"] == str(vm.pk)
    assert body["state"] == "requested"
    assert body["exercise"] == "hello-module"
    assert enqueued.call_args.kwargs["queue"] == "host.local.lab"
    status = alice.get(f"/labs/{vm.pk}").json()
    assert status["state"] == "requested"
    assert status["progress"] == "Waiting for a worker"


def test_lab_status_says_why_it_failed(world: World, alice: ApiClient) -> None:
    vm, _ = alice_lab_and_attempt(world)
    LabVM.objects.filter(pk=vm.pk).update(
        state=VMState.FAILED, error_code="no_capacity", error_message="no capacity on any host"
    )
    body = alice.get(f"/labs/{vm.pk}").json()
    assert body["state"] == "failed"
    assert body["error_code"] == "no_capacity"
    assert body["error_message"] == "no capacity on any host"


def test_lab_list_filters_by_state(world: World, alice: ApiClient) -> None:
    vm, _ = alice_lab_and_attempt(world)
    assert [v["id"] for v in alice.get("/labs?state=running").json()["items"]] == [str(vm.pk)]
    assert alice.get("/labs?state=stopped").json()["count"] == 0


def test_lab_stop_then_a_refused_resume(world: World, alice: ApiClient, enqueued: Any) -> None:
    vm, _ = alice_lab_and_attempt(world)
    stopped = alice.post(f"/labs/{vm.pk}/stop")
    assert stopped.status_code == 202
    assert stopped.json()["state"] == "stopping"
    refused = alice.post(f"/labs/{vm.pk}/resume")
    assert refused.status_code == 409
    body = problem(refused)
    assert body["code"] == "invalid_state"
    assert body["detail"] == "Cannot resume a VM that is stopping."


# -- attempts --------------------------------------------------------------------------


def test_check_from_the_running_vm(world: World, alice: ApiClient, enqueued: Any) -> None:
    vm, graded = alice_lab_and_attempt(world)
    response = alice.post(
        "/exercises/hello-module/attempts", data={"kind": "check"}, content_type="application/json"
    )
    assert response.status_code == 202
    body = response.json()
    attempt = Attempt.objects.exclude(pk=graded.pk).get()
    assert body["id"] == attempt.pk
    assert body["kind"] == "check"
    assert body["status"] == "queued"
    assert attempt.vm_id == vm.pk
    again = alice.post(
        "/exercises/hello-module/attempts", data={"kind": "check"}, content_type="application/json"
    )
    assert again.status_code == 409
    assert problem(again)["code"] == "attempt_open"


def test_check_without_a_vm_is_refused_with_the_pages_reason(
    world: World, alice: ApiClient
) -> None:
    exercise_version_for(world.hello.exercise)
    response = alice.post(
        "/exercises/hello-module/attempts", data={"kind": "check"}, content_type="application/json"
    )
    assert response.status_code == 409
    body = problem(response)
    assert body["code"] == "no_vm"
    assert body["detail"] == "Check runs in your lab VM: start the lab first."


def test_upload_is_stored_cleaned_and_queued_without_a_vm(
    world: World, alice: ApiClient, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    exercise_version_for(world.hello.exercise)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(
            alice,
            {
                "root/work/hello.c": b"int main;\n",
                "root/work/sub/Makefile": b"obj-m += hello.o\n",
                "root/elsewhere/secret": b"not declared\n",
            },
        )
    assert response.status_code == 202, response.content
    body = response.json()
    attempt = Attempt.objects.get(pk=body["id"])
    assert attempt.kind == AttemptKind.SUBMIT
    assert attempt.status == AttemptStatus.QUEUED
    assert attempt.vm is None
    files = SubmittedFiles.objects.get(attempts=attempt)
    assert [f["path"] for f in files.listing] == ["/root/work/hello.c", "/root/work/sub/Makefile"]
    assert body["files"]["sha256"] == files.sha256
    assert body["files"]["count"] == 2
    assert enqueued.call_args.args == ((attempt.pk,),)
    assert enqueued.call_args.kwargs["queue"] == "host.local.grading"


def test_upload_goes_through_the_artifact_rules(world: World, alice: ApiClient) -> None:
    exercise_version_for(world.hello.exercise)
    big = b"x" * ((1 << 20) + 1)
    response = upload(alice, {"root/work/big.c": big})
    assert response.status_code == 422
    body = problem(response)
    assert body["code"] == "files_refused"
    assert body["detail"].startswith("Your /root/work is 1.0 MiB")
    assert not Attempt.objects.exists()


def test_upload_that_is_not_a_tar_gz_is_refused(world: World, alice: ApiClient) -> None:
    exercise_version_for(world.hello.exercise)
    junk = SimpleUploadedFile("work.tar.gz", b"not a tarball", content_type="application/gzip")
    response = alice.post("/exercises/hello-module/submissions", data={"archive": junk})
    assert response.status_code == 422
    assert problem(response)["code"] == "files_refused"


def test_upload_larger_than_the_api_allows_is_413(
    world: World, alice: ApiClient, settings: Any
) -> None:
    exercise_version_for(world.hello.exercise)
    settings.API_UPLOAD_MAX_BYTES = 2048
    response = upload(alice, {"root/work/noise.c": secrets.token_bytes(4096)})  # incompressible
    assert response.status_code == 413
    assert problem(response)["code"] == "upload_too_large"


def test_attempt_detail_has_every_check_the_oops_and_the_files(
    world: World, alice: ApiClient
) -> None:
    _vm, attempt = alice_lab_and_attempt(world)
    body = alice.get(f"/attempts/{attempt.pk}").json()
    assert body["status"] == "graded"
    assert body["score"] == 60
    assert body["passed_all"] is False
    assert [(r["check_id"], r["passed"], r["message"]) for r in body["results"]] == [
        ("builds", True, "ok"),
        ("loads", False, "not loaded"),
    ]
    assert body["kernel_log"] == "BUG: kernel NULL pointer dereference"
    download = alice.client.get(body["files"]["url"], headers=alice.headers)
    assert download.status_code == 200
    assert download["Content-Type"] == "application/gzip"
    assert hashlib.sha256(download.content).hexdigest() == body["files"]["sha256"]


def test_attempt_list_filters(world: World, alice: ApiClient) -> None:
    _vm, attempt = alice_lab_and_attempt(world)
    assert [a["id"] for a in alice.get("/attempts?kind=submit").json()["items"]] == [attempt.pk]
    assert alice.get("/attempts?kind=check").json()["count"] == 0
    assert alice.get("/attempts?status=queued").json()["count"] == 0
    assert alice.get("/attempts?exercise=hello-module").json()["count"] == 1
    assert api_as(world.bob).get("/attempts").json()["count"] == 0


# -- cohorts ---------------------------------------------------------------------------


def test_instructor_lists_her_cohorts_and_roster(world: World) -> None:
    tess = api_as(world.tess, Scope.COHORT_ADMIN)
    cohorts = tess.get("/cohorts").json()
    assert [c["slug"] for c in cohorts["items"]] == ["autumn"]
    roster = tess.get(f"/cohorts/{world.autumn.pk}/roster").json()
    assert [(m["username"], m["role"]) for m in roster] == [
        ("tess", "instructor"),
        ("alice", "student"),
    ]
    assignments = tess.get(f"/cohorts/{world.autumn.pk}/assignments").json()
    assert [a["exercise"] for a in assignments] == ["hello-module"]


def test_gradebook_counts_the_submit_the_pages_count(world: World) -> None:
    _vm, attempt = alice_lab_and_attempt(world)
    tess = api_as(world.tess, Scope.COHORT_ADMIN)
    book = tess.get(f"/cohorts/{world.autumn.pk}/gradebook").json()
    assert book["exercises"] == ["hello-module"]
    [row] = book["rows"]
    assert row["username"] == "alice"
    assert row["grades"] == [
        {
            "exercise": "hello-module",
            "attempt_id": attempt.pk,
            "score": 60,
            "max_score": 100,
            "is_late": False,
            "final_score": 60.0,
            "penalty_percent": 0.0,
            "overridden": False,
            "extended": False,
        }
    ]
    assert (row["total"], row["final_total"]) == (60, 60.0)


def test_gradebook_csv(world: World) -> None:
    alice_lab_and_attempt(world)
    world.alice.first_name = "=HYPERLINK()"
    world.alice.save()
    tess = api_as(world.tess, Scope.COHORT_ADMIN)
    response = tess.get(f"/cohorts/{world.autumn.pk}/gradebook.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        [
            "Username",
            "Email",
            "Last name",
            "First name",
            "Student ID",
            "Hello, kernel module [hello-module]",
            "Total",
        ],
        ["alice", "alice@example.org", "", "'=HYPERLINK()", "", "60", "60"],
    ]
    # The page's download says the same.
    page = client_for(world.tess).get(f"/teach/cohorts/{world.autumn.pk}/gradebook.csv")
    assert page.content == response.content
