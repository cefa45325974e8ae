"""Rate limits (labplatform.ratelimits): Start and the other lab actions,
console tickets, Check and Submit answer 429 with Retry-After past their
limit, as JSON for the page's script and as a page for a plain form; a
login locks after repeated failures and unlocks after the cool-off; one
student has at most GRADING_MAX_PER_STUDENT gradings open across exercises."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from axes.models import AccessAttempt
from django.conf import LazySettings
from django.test import Client
from django.utils import timezone

from exercises.errors import AttemptRefused
from exercises.models import AttemptKind
from exercises.services import attempt_start
from labplatform.courses.services import assignment_set
from tests.conftest import PASSWORD, World, client_for, exercise_version_for, make_exercise
from vms.models import Host, LabVM, VMState

JSON = {"Accept": "application/json"}


@pytest.fixture
def enqueued() -> Iterator[mock.Mock]:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def tight(settings: LazySettings) -> None:
    settings.RATE_LIMITS = {"lab": "2/min", "console": "2/min", "check": "1/min", "submit": "1/min"}


def running_vm(world: World) -> LabVM:
    return LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=VMState.RUNNING,
        expires_at=timezone.now() + timedelta(days=1),
    )


def assert_too_many(response: Any, *, what: str) -> None:
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    body = response.json()
    assert body["error"] == "rate_limited"
    assert what in body["message"]
    assert "Try again in" in body["message"]


def test_start_past_its_limit_is_429_with_retry_after(
    world: World, tight: None, enqueued: mock.Mock
) -> None:
    alice = client_for(world.alice)
    for _ in range(2):
        assert alice.post("/exercises/hello-module/start", headers=JSON).status_code == 200
    assert_too_many(alice.post("/exercises/hello-module/start", headers=JSON), what="lab actions")
    assert LabVM.objects.filter(owner=world.alice).count() == 1


def test_the_other_lab_actions_share_the_limit(
    world: World, tight: None, enqueued: mock.Mock
) -> None:
    vm = running_vm(world)
    alice = client_for(world.alice)
    assert alice.post(f"/vms/{vm.pk}/stop", headers=JSON).status_code == 200
    assert alice.post(f"/vms/{vm.pk}/resume", headers=JSON).status_code == 409  # still stopping
    assert_too_many(alice.post(f"/vms/{vm.pk}/reset", headers=JSON), what="lab actions")


def test_a_plain_form_gets_a_page_saying_when_to_try_again(
    world: World, tight: None, enqueued: mock.Mock
) -> None:
    alice = client_for(world.alice)
    for _ in range(2):
        alice.post("/exercises/hello-module/start")
    response = alice.post("/exercises/hello-module/start")
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert "Too many lab actions" in response.content.decode()
    assert int(response["Retry-After"]) > 0


def test_limits_are_per_student(world: World, tight: None, enqueued: mock.Mock) -> None:
    alice = client_for(world.alice)
    for _ in range(3):
        alice.post("/exercises/hello-module/start", headers=JSON)
    bob = client_for(world.bob)
    assert bob.post("/exercises/strace-syscalls/start", headers=JSON).status_code == 200


def test_console_tickets_past_their_limit_are_429(world: World, tight: None) -> None:
    vm = running_vm(world)
    alice = client_for(world.alice)
    for _ in range(2):
        assert alice.post(f"/vms/{vm.pk}/console-token", headers=JSON).status_code == 200
    assert_too_many(
        alice.post(f"/vms/{vm.pk}/console-token", headers=JSON), what="console connections"
    )


@pytest.mark.parametrize(("action", "what"), [("check", "Checks"), ("submit", "Submits")])
def test_check_and_submit_past_their_limit_are_429(
    world: World, tight: None, enqueued: mock.Mock, action: str, what: str
) -> None:
    alice = client_for(world.alice)
    first = alice.post(f"/exercises/hello-module/{action}", headers=JSON)
    assert first.status_code == 409  # counted even when refused: no VM yet
    assert_too_many(alice.post(f"/exercises/hello-module/{action}", headers=JSON), what=what)


def test_default_limits_let_a_student_work_normally(world: World, enqueued: mock.Mock) -> None:
    vm = running_vm(world)
    alice = client_for(world.alice)
    for _ in range(5):
        assert alice.post(f"/vms/{vm.pk}/console-token", headers=JSON).status_code == 200
        assert alice.post("/exercises/hello-module/start", headers=JSON).status_code == 200


# -- login lockout (django-axes) -----------------------------------------------------


def login(password: str, address: str = "192.0.2.10") -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": "alice", "password": password}
    )


def test_login_locks_after_repeated_failures_and_says_so(
    world: World, settings: LazySettings
) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login("wrong").status_code == 200  # the form again, with its error
    locked = login("wrong")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert "Too many failed logins" in locked.content.decode()
    # Even the right password is refused while locked.
    assert login(PASSWORD).status_code == 429


def test_the_lockout_is_per_address(world: World, settings: LazySettings) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login("wrong")
    assert login(PASSWORD, address="198.51.100.7").status_code == 302


def test_login_unlocks_after_the_cool_off(world: World, settings: LazySettings) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login("wrong")
    assert login(PASSWORD).status_code == 429
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    assert login(PASSWORD).status_code == 302


def test_a_success_resets_the_count(world: World, settings: LazySettings) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login("wrong")
    assert login(PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login("wrong").status_code == 200


# -- gradings open at once per student ---------------------------------------------------


def test_a_student_has_at_most_the_cap_of_gradings_open_across_exercises(
    world: World,
    settings: LazySettings,
    enqueued: mock.Mock,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.GRADING_MAX_PER_STUDENT = 1
    exercise_version_for(world.hello.exercise, checks=(("builds", 20, False),))
    other = assignment_set(
        cohort=world.autumn,
        exercise=make_exercise("sysctl-tuning", "Tuning sysctls", "sysctl"),
        opens_at=timezone.now() - timedelta(days=1),
        due_at=timezone.now() + timedelta(days=1),
        closes_at=timezone.now() + timedelta(days=2),
    )
    exercise_version_for(other.exercise, checks=(("live", 10, False),))
    running_vm(world)
    LabVM.objects.create(
        owner=world.alice,
        exercise=other.exercise,
        assignment=other,
        host=Host.objects.get(name="local"),
        state=VMState.RUNNING,
        expires_at=timezone.now() + timedelta(days=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        attempt_start(user=world.alice, assignment=world.hello, kind=AttemptKind.CHECK)
    with pytest.raises(AttemptRefused) as refused:
        attempt_start(user=world.alice, assignment=other, kind=AttemptKind.CHECK)
    assert refused.value.code == AttemptRefused.TOO_MANY_GRADINGS
    assert "Wait for one of them to finish" in refused.value.message
