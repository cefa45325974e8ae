"""Check and Submit from the student's side: when an attempt may start, where
its grading is sent, who may read it, what the exercise page shows, and the
reaper of lost gradings. The grading task itself is captured, not run."""

from __future__ import annotations

import io
import re
import tarfile
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from exercises import tasks
from exercises.artifacts.archive import ArtifactsRefused, CleanArchive, sanitize
from exercises.errors import AttemptRefused
from exercises.manifest import ArtifactSpec
from exercises.models import Attempt, AttemptKind, AttemptStatus, CheckResult, ExerciseVersion
from exercises.selectors import attempt_result_counted
from exercises.services import STUCK_REASON, attempt_start, attempts_reap_stuck
from labplatform.accounts.models import User
from labplatform.courses.models import Assignment
from tests.conftest import World, client_for, exercise_version_for
from tests.support.labs import lab_vm_for
from vms.hypervisor.errors import AgentTimeout
from vms.models import Host, LabVM, VMState

CHECK, SUBMIT = AttemptKind.CHECK, AttemptKind.SUBMIT
PAGE = "/exercises/hello-module/"


HELLO_C = b"/* alice's module */\n"


def clean_archive(files: dict[str, bytes]) -> CleanArchive:
    """What the host makes of a guest's tar of these files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sanitize(raw.getvalue(), [ArtifactSpec(path="/root/hello")])


@pytest.fixture(autouse=True)
def collected() -> Any:
    """A Submit collects the student's files from their guest: here, from a
    stand-in that always has the same hello.c."""
    with mock.patch(
        "exercises.artifacts.collect.collect_from_vm",
        return_value=clean_archive({"/root/hello/hello.c": HELLO_C}),
    ) as collect:
        yield collect


@pytest.fixture
def enqueued() -> Any:
    """Record the tasks services enqueue after commit instead of sending them."""
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def hello(world: World) -> Assignment:
    """Alice's assignment, gradable: a visible 20-point check and a hidden 5-point one."""
    exercise_version_for(world.hello.exercise, checks=(("builds", 20, False), ("reload", 5, True)))
    return world.hello


def start(user: User, assignment: Assignment, kind: AttemptKind, capture: Any) -> Attempt:
    with capture(execute=True):
        return attempt_start(user=user, assignment=assignment, kind=kind)


def set_window(assignment: Assignment, *, opens: int, due: int, closes: int) -> None:
    """Move the assignment's dates to these many hours from now."""
    now = timezone.now()
    assignment.opens_at = now + timedelta(hours=opens)
    assignment.due_at = now + timedelta(hours=due)
    assignment.closes_at = now + timedelta(hours=closes)
    assignment.save()


def age(attempt: Attempt, minutes: float, *, started_minutes: float | None = None) -> None:
    now = timezone.now()
    Attempt.objects.filter(pk=attempt.pk).update(
        created_at=now - timedelta(minutes=minutes),
        started_at=None if started_minutes is None else now - timedelta(minutes=started_minutes),
    )


# -- attempt_start -------------------------------------------------------------------


def test_check_is_queued_with_the_vm_and_graded_on_its_host_after_commit(
    world: World, hello: Assignment, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    vm = lab_vm_for(world.alice, hello)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        attempt = attempt_start(user=world.alice, assignment=hello, kind=CHECK)
        assert not enqueued.called  # nothing leaves before the row is committed
    assert len(callbacks) == 1
    callbacks[0]()
    ((args, kwargs),) = enqueued.call_args_list
    assert args == ((attempt.pk,),)
    assert kwargs == {"queue": "host.local.grading"}

    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.QUEUED
    assert (attempt.student, attempt.assignment, attempt.vm_id) == (world.alice, hello, vm.pk)
    assert attempt.version_id == hello.exercise.current_version_id
    assert attempt.max_score == 20  # the hidden check only runs at Submit
    assert not attempt.is_late


def test_submit_counts_the_hidden_checks_and_uses_the_vms_host(
    world: World, hello: Assignment, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    vm = lab_vm_for(world.alice, hello)
    LabVM.objects.filter(pk=vm.pk).update(host=Host.objects.create(name="h2", uri="test:///"))
    attempt = start(world.alice, hello, SUBMIT, django_capture_on_commit_callbacks)
    assert (attempt.kind, attempt.max_score, attempt.vm_id) == (SUBMIT, 25, vm.pk)
    assert enqueued.call_args.kwargs == {"queue": "host.h2.grading"}


@pytest.mark.parametrize("kind", [CHECK, SUBMIT])
@pytest.mark.parametrize(
    ("vm_state", "message"),
    [
        (None, "start the lab first"),
        (VMState.STOPPED, "resume it first"),
        (VMState.PROVISIONING, "which is starting: wait until it is running"),
        (VMState.DESTROYED, "start the lab first"),
        (VMState.FAILED, "start the lab first"),
    ],
)
def test_a_vm_that_is_not_running_is_refused(
    world: World,
    hello: Assignment,
    enqueued: Any,
    kind: AttemptKind,
    vm_state: VMState | None,
    message: str,
) -> None:
    if vm_state is not None:
        lab_vm_for(world.alice, hello, vm_state)
    with pytest.raises(AttemptRefused, match=message) as refused:
        attempt_start(user=world.alice, assignment=hello, kind=kind)
    assert refused.value.code == AttemptRefused.NO_VM
    expected = "Check runs in your lab VM" if kind == CHECK else "Submit collects your work"
    assert refused.value.message.startswith(expected)
    assert not Attempt.objects.exists()
    assert not enqueued.called


def test_another_students_running_vm_does_not_count(
    world: World, hello: Assignment, enqueued: Any
) -> None:
    from labplatform.courses.models import Role
    from labplatform.courses.services import enrolment_set
    from tests.conftest import make_user

    dave = make_user("dave")
    enrolment_set(user=dave, cohort=world.autumn, role=Role.STUDENT)
    lab_vm_for(dave, hello)
    with pytest.raises(AttemptRefused) as refused:
        attempt_start(user=world.alice, assignment=hello, kind=CHECK)
    assert refused.value.code == AttemptRefused.NO_VM


@pytest.mark.parametrize("kind", [CHECK, SUBMIT])
def test_before_the_assignment_opens_is_refused(
    world: World, hello: Assignment, enqueued: Any, kind: AttemptKind
) -> None:
    lab_vm_for(world.alice, hello)
    set_window(hello, opens=2, due=10, closes=20)
    with pytest.raises(AttemptRefused, match="opens on") as refused:
        attempt_start(user=world.alice, assignment=hello, kind=kind)
    assert refused.value.code == AttemptRefused.NOT_OPEN
    assert not Attempt.objects.exists()


@pytest.mark.parametrize("kind", [CHECK, SUBMIT])
def test_after_the_hard_close_is_refused(
    world: World, hello: Assignment, enqueued: Any, kind: AttemptKind
) -> None:
    lab_vm_for(world.alice, hello)
    set_window(hello, opens=-20, due=-10, closes=-1)
    with pytest.raises(AttemptRefused, match=r"closed on .*no more checks or submissions") as r:
        attempt_start(user=world.alice, assignment=hello, kind=kind)
    assert r.value.code == AttemptRefused.CLOSED
    assert not Attempt.objects.exists()
    assert not enqueued.called


def test_after_the_due_date_a_submit_is_accepted_and_late(
    world: World, hello: Assignment, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    lab_vm_for(world.alice, hello)
    set_window(hello, opens=-20, due=-1, closes=5)
    check = start(world.alice, hello, CHECK, django_capture_on_commit_callbacks)
    assert not check.is_late  # a Check counts for nothing, so it is never late
    Attempt.objects.filter(pk=check.pk).update(status=AttemptStatus.GRADED)
    submit = start(world.alice, hello, SUBMIT, django_capture_on_commit_callbacks)
    assert submit.is_late
    assert enqueued.call_count == 2


def test_an_exercise_without_a_version_is_refused(world: World, enqueued: Any) -> None:
    lab_vm_for(world.alice, world.hello)
    assert world.hello.exercise.current_version is None
    with pytest.raises(AttemptRefused, match="cannot be graded right now") as refused:
        attempt_start(user=world.alice, assignment=world.hello, kind=CHECK)
    assert refused.value.code == AttemptRefused.NOT_READY


def test_a_withdrawn_exercise_is_refused(world: World, hello: Assignment, enqueued: Any) -> None:
    lab_vm_for(world.alice, hello)
    hello.exercise.is_active = False
    hello.exercise.save()
    with pytest.raises(AttemptRefused) as refused:
        attempt_start(user=world.alice, assignment=hello, kind=SUBMIT)
    assert refused.value.code == AttemptRefused.NOT_READY


@pytest.mark.parametrize("open_status", [AttemptStatus.QUEUED, AttemptStatus.RUNNING])
@pytest.mark.parametrize(("first", "second"), [(CHECK, SUBMIT), (SUBMIT, CHECK), (CHECK, CHECK)])
def test_one_open_attempt_at_a_time(
    world: World,
    hello: Assignment,
    enqueued: Any,
    django_capture_on_commit_callbacks: Any,
    open_status: AttemptStatus,
    first: AttemptKind,
    second: AttemptKind,
) -> None:
    lab_vm_for(world.alice, hello)
    pending = start(world.alice, hello, first, django_capture_on_commit_callbacks)
    Attempt.objects.filter(pk=pending.pk).update(status=open_status)
    label = "check" if first == CHECK else "submission"
    with pytest.raises(AttemptRefused, match=f"Your {label} is still being graded") as refused:
        attempt_start(user=world.alice, assignment=hello, kind=second)
    assert refused.value.code == AttemptRefused.ATTEMPT_OPEN
    assert Attempt.objects.count() == 1
    assert enqueued.call_count == 1

    # Once it is finished, whatever the outcome, the next one may start.
    Attempt.objects.filter(pk=pending.pk).update(status=AttemptStatus.CHECKER_ERROR)
    start(world.alice, hello, second, django_capture_on_commit_callbacks)
    assert Attempt.objects.count() == 2


def test_open_attempts_of_others_or_of_other_exercises_do_not_block(
    world: World, hello: Assignment, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    exercise_version_for(world.strace.exercise)
    lab_vm_for(world.bob, world.strace)
    start(world.bob, world.strace, CHECK, django_capture_on_commit_callbacks)
    lab_vm_for(world.alice, hello)
    start(world.alice, hello, CHECK, django_capture_on_commit_callbacks)
    assert Attempt.objects.filter(status=AttemptStatus.QUEUED).count() == 2


# -- the counted submission --------------------------------------------------------


def make_attempt(
    world: World,
    kind: AttemptKind,
    status: AttemptStatus = AttemptStatus.GRADED,
    *,
    hours_ago: float = 1,
    score: int = 10,
    student: User | None = None,
) -> Attempt:
    assignment = world.hello
    version = exercise_version_for(
        assignment.exercise, checks=(("builds", 20, False), ("reload", 5, True))
    )
    attempt = Attempt.objects.create(
        student=student or world.alice,
        assignment=assignment,
        exercise=assignment.exercise,
        version=version,
        kind=kind,
        status=status,
        score=score,
        max_score=version.parsed_manifest.max_score("submit" if kind == SUBMIT else "check"),
    )
    Attempt.objects.filter(pk=attempt.pk).update(
        created_at=timezone.now() - timedelta(hours=hours_ago)
    )
    attempt.refresh_from_db()
    return attempt


def test_the_latest_graded_on_time_submit_counts(world: World) -> None:
    assert attempt_result_counted(user=world.alice, assignment=world.hello) is None
    make_attempt(world, SUBMIT, hours_ago=5, score=5)
    latest = make_attempt(world, SUBMIT, hours_ago=3, score=3)  # latest, not best
    make_attempt(world, CHECK, hours_ago=2, score=20)  # checks never count
    make_attempt(world, SUBMIT, AttemptStatus.CHECKER_ERROR, hours_ago=1.2)
    make_attempt(world, SUBMIT, AttemptStatus.QUEUED, hours_ago=1)
    make_attempt(world, SUBMIT, student=world.bob)
    assert attempt_result_counted(user=world.alice, assignment=world.hello) == latest
    # A Submit that crashed the kernel is the student's result too.
    crashed = make_attempt(world, SUBMIT, AttemptStatus.KERNEL_CRASHED, hours_ago=1.5, score=0)
    assert attempt_result_counted(user=world.alice, assignment=world.hello) == crashed


def test_a_late_submit_counts_only_without_an_on_time_one(world: World) -> None:
    make_attempt(world, SUBMIT, hours_ago=1)  # after the due date set below
    set_window(world.hello, opens=-20, due=-2, closes=5)
    late = attempt_result_counted(user=world.alice, assignment=world.hello)
    assert late is not None
    on_time = make_attempt(world, SUBMIT, hours_ago=3)
    assert attempt_result_counted(user=world.alice, assignment=world.hello) == on_time


# -- the reaper --------------------------------------------------------------------


def test_reaper_fails_only_attempts_stuck_past_their_longest_grading(world: World) -> None:
    # The fixture's checker times out after 60 s: a Check's limit is 11.3
    # minutes; a Submit's adds a cold boot (3 min), copying the files in
    # (2 min) and the clean-up (1 min): 17.3 minutes.
    assert settings.GRADING_STUCK_GRACE_MINUTES == 10
    assert settings.VM_BOOT_TIMEOUT_SECONDS == 180
    stuck_queued = make_attempt(world, CHECK, AttemptStatus.QUEUED)
    age(stuck_queued, 12)
    stuck_running = make_attempt(world, SUBMIT, AttemptStatus.RUNNING)
    age(stuck_running, 30, started_minutes=18)
    young = make_attempt(world, CHECK, AttemptStatus.QUEUED)
    age(young, 10)
    # Waited long in the queue, but a worker took it recently: still alive.
    running_since_recently = make_attempt(world, SUBMIT, AttemptStatus.RUNNING)
    age(running_since_recently, 30, started_minutes=5)
    # Past its checker's limit and the grace, but a Submit that booted cold
    # can still be at work: not lost yet.
    slow_submit = make_attempt(world, SUBMIT, AttemptStatus.RUNNING)
    age(slow_submit, 30, started_minutes=14)
    finished = make_attempt(world, SUBMIT, AttemptStatus.GRADED)
    age(finished, 60)

    reaped = attempts_reap_stuck()

    assert sorted(reaped) == sorted([stuck_queued.pk, stuck_running.pk])
    for attempt in (stuck_queued, stuck_running):
        attempt.refresh_from_db()
        assert (attempt.status, attempt.reason) == (AttemptStatus.ERROR, STUCK_REASON)
        assert attempt.finished_at is not None
    for attempt, status in [
        (young, AttemptStatus.QUEUED),
        (running_since_recently, AttemptStatus.RUNNING),
        (slow_submit, AttemptStatus.RUNNING),
        (finished, AttemptStatus.GRADED),
    ]:
        attempt.refresh_from_db()
        assert attempt.status == status
    assert attempts_reap_stuck() == []  # idempotent


def test_reaper_allows_a_longer_checker_timeout(world: World) -> None:
    attempt = make_attempt(world, CHECK, AttemptStatus.QUEUED)
    manifest = dict(attempt.version.manifest)
    manifest["grading"] = {**manifest["grading"], "checker_timeout_seconds": 1200}
    ExerciseVersion.objects.filter(pk=attempt.version_id).update(manifest=manifest)
    age(attempt, 25)  # 20 minutes of checker + 10 of grace is not over yet
    assert attempts_reap_stuck() == []
    age(attempt, 31)
    assert attempts_reap_stuck() == [attempt.pk]


def test_tasks_are_thin_and_scheduled() -> None:
    assert tasks.grade.name == "exercises.grade"
    assert tasks.grade.acks_late
    with mock.patch("exercises.grading.engine.grade") as grade:
        tasks.grade(42)
    grade.assert_called_once_with(42, redelivered=False)
    schedule = settings.CELERY_BEAT_SCHEDULE["reap-attempts"]
    assert schedule == {"task": tasks.reap_attempts.name, "schedule": 300.0}
    with mock.patch("exercises.services.attempts_reap_stuck") as reap:
        tasks.reap_attempts()
    reap.assert_called_once_with()


# -- views: Check and Submit -------------------------------------------------------


@pytest.mark.parametrize(("action", "kind"), [("check", CHECK), ("submit", SUBMIT)])
def test_post_starts_an_attempt_and_returns_to_it(
    world: World,
    hello: Assignment,
    enqueued: Any,
    django_capture_on_commit_callbacks: Any,
    action: str,
    kind: AttemptKind,
) -> None:
    lab_vm_for(world.alice, hello)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.alice).post(f"/exercises/hello-module/{action}")
    attempt = Attempt.objects.get()
    assert attempt.kind == kind
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}#attempt-{attempt.pk}"
    assert enqueued.call_count == 1


@pytest.mark.parametrize("action", ["check", "submit"])
def test_check_and_submit_need_post(world: World, hello: Assignment, action: str) -> None:
    lab_vm_for(world.alice, hello)
    assert client_for(world.alice).get(f"/exercises/hello-module/{action}").status_code == 405
    assert not Attempt.objects.exists()


def test_a_refusal_is_shown_on_the_exercise_page(
    world: World, hello: Assignment, enqueued: Any
) -> None:
    response = client_for(world.alice).post("/exercises/hello-module/check", follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    assert "Check runs in your lab VM: start the lab first." in response.content.decode()
    assert not Attempt.objects.exists()


def test_the_pages_script_gets_json(world: World, hello: Assignment, enqueued: Any) -> None:
    alice = client_for(world.alice)
    refused = alice.post("/exercises/hello-module/submit", HTTP_ACCEPT="application/json")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "no_vm",
        "message": "Submit collects your work from your lab VM: start the lab first.",
    }
    lab_vm_for(world.alice, hello)
    accepted = alice.post("/exercises/hello-module/submit", HTTP_ACCEPT="application/json")
    assert accepted.status_code == 202
    body = accepted.json()
    attempt = Attempt.objects.get()
    assert (body["id"], body["status"], body["max_score"]) == (attempt.pk, "queued", 25)
    assert body["status_url"] == f"/exercises/attempts/{attempt.pk}"


# tess teaches hello-module: she may Check it as a preview (tests/unit/test_preview.py).
@pytest.mark.parametrize("persona", ["bob", "charlie"])
def test_nobody_checks_an_exercise_that_is_not_assigned_to_them(
    world: World, hello: Assignment, enqueued: Any, persona: str
) -> None:
    lab_vm_for(world.alice, hello)
    client = client_for(getattr(world, persona))
    assert client.post("/exercises/hello-module/check").status_code == 404
    assert not Attempt.objects.exists()


def test_anonymous_post_goes_to_login(world: World, hello: Assignment, enqueued: Any) -> None:
    response = Client().post("/exercises/hello-module/check")
    assert response.status_code == 302
    assert "/accounts/login" in response["Location"]
    assert not Attempt.objects.exists()


# -- views: reading an attempt -----------------------------------------------------


def graded_attempt(world: World) -> Attempt:
    attempt = make_attempt(world, SUBMIT, score=20)
    Attempt.objects.filter(pk=attempt.pk).update(
        kernel_log="BUG: kernel NULL pointer dereference",
        started_at=timezone.now() - timedelta(minutes=2),
        finished_at=timezone.now() - timedelta(minutes=1),
        is_late=True,
    )
    CheckResult.objects.create(
        attempt=attempt,
        position=0,
        check_id="builds",
        title="The module builds",
        passed=True,
        points=20,
        max_points=20,
        message="make: ok",
    )
    CheckResult.objects.create(
        attempt=attempt,
        position=1,
        check_id="reload",
        title="It can be loaded twice",
        passed=False,
        points=0,
        max_points=5,
        message="<b>insmod</b>: File exists",
        hidden=True,
    )
    attempt.refresh_from_db()
    return attempt


def test_the_status_json(world: World) -> None:
    attempt = graded_attempt(world)
    response = client_for(world.alice).get(f"/exercises/attempts/{attempt.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "kind": "attempt",
        "id": attempt.pk,
        "exercise": "hello-module",
        "attempt_kind": "submit",
        "attempt_kind_label": "Submission",
        "status": "graded",
        "status_label": "Graded",
        "is_finished": True,
        "score": 20,
        "max_score": 25,
        "reason": "",
        "is_late": True,
        "results": [
            {
                "check_id": "builds",
                "title": "The module builds",
                "passed": True,
                "points": 20,
                "max_points": 20,
                "message": "make: ok",
                "hidden": False,
            },
            {
                "check_id": "reload",
                "title": "It can be loaded twice",
                "passed": False,
                "points": 0,
                "max_points": 5,
                "message": "<b>insmod</b>: File exists",
                "hidden": True,
            },
        ],
        "kernel_log": "BUG: kernel NULL pointer dereference",
        "created_at": attempt.created_at.isoformat(),
        "started_at": attempt.started_at.isoformat() if attempt.started_at else None,
        "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
        "files": None,
        "url": f"/exercises/attempts/{attempt.pk}/",
        "status_url": f"/exercises/attempts/{attempt.pk}",
        "counts": True,
    }


def test_a_queued_attempt_in_json(world: World) -> None:
    attempt = make_attempt(world, CHECK, AttemptStatus.QUEUED)
    body = client_for(world.alice).get(f"/exercises/attempts/{attempt.pk}").json()
    assert (body["status"], body["status_label"]) == ("queued", "Waiting to be graded")
    assert (body["is_finished"], body["results"], body["finished_at"]) == (False, [], None)
    assert body["counts"] is False


@pytest.mark.parametrize("suffix", ["", "/"])
@pytest.mark.parametrize(("persona", "status"), [("bob", 404), ("charlie", 404), ("tess", 200)])
def test_only_the_student_and_their_instructors_read_an_attempt(
    world: World, suffix: str, persona: str, status: int
) -> None:
    attempt = graded_attempt(world)
    url = f"/exercises/attempts/{attempt.pk}{suffix}"
    assert client_for(getattr(world, persona)).get(url).status_code == status
    assert client_for(world.alice).get(url).status_code == 200


def test_instructors_keep_access_when_the_assignment_is_gone(world: World) -> None:
    attempt = graded_attempt(world)
    Attempt.objects.filter(pk=attempt.pk).update(assignment=None)
    url = f"/exercises/attempts/{attempt.pk}"
    assert client_for(world.tess).get(url).status_code == 200
    assert client_for(world.charlie).get(url).status_code == 404


def test_missing_attempt_is_404_and_reading_needs_get(world: World) -> None:
    attempt = graded_attempt(world)
    alice = client_for(world.alice)
    assert alice.get(f"/exercises/attempts/{attempt.pk + 1000}").status_code == 404
    assert alice.post(f"/exercises/attempts/{attempt.pk}").status_code == 405
    assert Client().get(f"/exercises/attempts/{attempt.pk}").status_code == 302


def test_the_attempt_page_shows_every_check_escaped(world: World) -> None:
    attempt = graded_attempt(world)
    page = client_for(world.alice).get(f"/exercises/attempts/{attempt.pk}/").content.decode()
    assert "The module builds" in page
    assert "&lt;b&gt;insmod&lt;/b&gt;: File exists" in page
    assert "<b>insmod</b>" not in page
    assert "<pre>BUG: kernel NULL pointer dereference</pre>" in page
    assert "this is the submission that counts" in page
    tess_page = client_for(world.tess).get(f"/exercises/attempts/{attempt.pk}/").content.decode()
    assert "Alice" in tess_page  # an instructor sees whose it is


# -- the exercise page -------------------------------------------------------------


def test_the_page_renders_the_versions_instructions_sanitised(world: World) -> None:
    exercise = world.hello.exercise
    exercise.instructions = (
        "# Hello\n\nBuild **hello.ko**.\n\n<script>alert('x')</script>\n\n"
        '<a href="javascript:alert(1)">click</a>\n'
    )
    exercise.save()
    exercise_version_for(exercise)
    exercise.instructions = "stale copy"  # the page reads the version, not this
    exercise.save()
    page = client_for(world.alice).get(PAGE).content.decode()
    assert "<h1>Hello</h1>" in page
    assert "<strong>hello.ko</strong>" in page
    assert "alert(" not in page
    assert "javascript:" not in page
    assert "stale copy" not in page


def buttons(page: str) -> dict[str, bool]:
    """{"check": enabled, "submit": enabled}"""
    found = {}
    for kind in ("check", "submit"):
        form = re.search(
            rf'<form method="post" action="/exercises/hello-module/{kind}"[^>]*>(.*?)</form>',
            page,
            re.S,
        )
        assert form is not None, kind
        assert "csrfmiddlewaretoken" in form.group(1)
        found[kind] = " disabled" not in form.group(1)
    return found


def test_buttons_are_enabled_only_when_an_attempt_can_start(
    world: World, hello: Assignment
) -> None:
    alice = client_for(world.alice)
    page = alice.get(PAGE).content.decode()
    assert buttons(page) == {"check": False, "submit": False}
    assert "Start your lab VM to check or submit your work." in page
    assert "runs the tests in your own VM" in page
    assert "is what counts" in page

    lab_vm_for(world.alice, hello)
    page = alice.get(PAGE).content.decode()
    assert buttons(page) == {"check": True, "submit": True}

    pending = make_attempt(world, CHECK, AttemptStatus.RUNNING)
    page = alice.get(PAGE).content.decode()
    assert buttons(page) == {"check": False, "submit": False}
    assert "Your last attempt is being graded" in page
    assert f'id="attempt-{pending.pk}"' in page
    assert 'data-status="running"' in page
    assert "js/attempts.js" in page

    Attempt.objects.filter(pk=pending.pk).update(status=AttemptStatus.GRADED)
    set_window(hello, opens=-20, due=-10, closes=-1)
    page = alice.get(PAGE).content.decode()
    assert buttons(page) == {"check": False, "submit": False}
    assert "This exercise is closed" in page


def test_the_page_shows_the_latest_feedback_and_the_counted_submission(world: World) -> None:
    attempt = graded_attempt(world)
    page = client_for(world.alice).get(PAGE).content.decode()
    assert f'<article class="attempt" id="attempt-{attempt.pk}"' in page
    assert "20 / 25 points" in page
    assert "✓" in page
    assert "✗" in page
    assert "It can be loaded twice" in page
    assert "hidden test" in page
    assert "&lt;b&gt;insmod&lt;/b&gt;" in page
    assert 'aria-live="polite"' in page
    assert f"Submission #{attempt.pk}</a>, 20 / 25 points (late)" in page
    assert world.hello.closes_at.strftime("%Y-%m-%dT%H:%M:%S") in page


def test_the_history_is_paginated(world: World) -> None:
    made = [make_attempt(world, CHECK, hours_ago=20 - i, score=i) for i in range(12)]
    alice = client_for(world.alice)
    first = alice.get(PAGE).content.decode()
    second = alice.get(PAGE + "?page=2").content.decode()
    rows = re.compile(r'data-attempt-row="(\d+)"')
    assert [int(pk) for pk in rows.findall(first)] == [a.pk for a in reversed(made[2:])]
    assert [int(pk) for pk in rows.findall(second)] == [made[1].pk, made[0].pk]
    assert "Page 1 of 2" in first
    assert f"/exercises/attempts/{made[0].pk}/" in second


def test_another_students_attempts_are_not_on_the_page(world: World) -> None:
    mine = make_attempt(world, CHECK)
    from labplatform.courses.models import Role
    from labplatform.courses.services import enrolment_set
    from tests.conftest import make_user

    dave = make_user("dave")
    enrolment_set(user=dave, cohort=world.autumn, role=Role.STUDENT)
    page = client_for(dave).get(PAGE).content.decode()
    assert f'data-attempt-row="{mine.pk}"' not in page
    assert "No checks yet" in page


# -- a Submit's files ----------------------------------------------------------------


def test_submit_stores_the_files_collected_at_the_click(
    world: World, hello: Assignment, django_capture_on_commit_callbacks: Any, collected: Any
) -> None:
    vm = lab_vm_for(world.alice, hello)
    before = timezone.now()
    attempt = start(world.alice, hello, SUBMIT, django_capture_on_commit_callbacks)
    collected.assert_called_once()
    assert collected.call_args.args[0] == vm
    assert attempt.files is not None
    stored = attempt.files
    stored.refresh_from_db()
    with tarfile.open(fileobj=io.BytesIO(bytes(stored.archive)), mode="r:gz") as tar:
        member = tar.getmember("root/hello/hello.c")
        handle = tar.extractfile(member)
        assert handle is not None
        assert handle.read() == HELLO_C
        assert (member.uid, member.mode) == (0, 0o644)
    assert stored.listing == [
        {"path": "/root/hello/hello.c", "size": len(HELLO_C), "executable": False}
    ]
    assert before <= attempt.created_at <= stored.collected_at + timedelta(seconds=1)


def test_a_check_collects_nothing(
    world: World, hello: Assignment, django_capture_on_commit_callbacks: Any, collected: Any
) -> None:
    lab_vm_for(world.alice, hello)
    attempt = start(world.alice, hello, CHECK, django_capture_on_commit_callbacks)
    assert attempt.files is None
    collected.assert_not_called()


def test_files_that_break_the_rules_refuse_the_submit_and_create_nothing(
    world: World, hello: Assignment, collected: Any
) -> None:
    lab_vm_for(world.alice, hello)
    collected.side_effect = ArtifactsRefused("Your /root/hello is 23.0 MiB; the limit is 1.0 MiB.")
    with pytest.raises(AttemptRefused) as refused:
        attempt_start(user=world.alice, assignment=hello, kind=SUBMIT)
    assert refused.value.code == AttemptRefused.FILES_REFUSED
    assert "the limit is 1.0 MiB" in refused.value.message
    assert not Attempt.objects.exists()


def test_a_vm_that_does_not_answer_refuses_the_submit(
    world: World, hello: Assignment, collected: Any
) -> None:
    lab_vm_for(world.alice, hello)
    collected.side_effect = AgentTimeout("guest agent: guest-exec timed out")
    with pytest.raises(AttemptRefused) as refused:
        attempt_start(user=world.alice, assignment=hello, kind=SUBMIT)
    assert refused.value.code == AttemptRefused.NO_VM
    assert "did not answer" in refused.value.message
    assert not Attempt.objects.exists()


def test_a_submit_clicked_before_the_deadline_is_on_time_however_long_collecting_takes(
    world: World, hello: Assignment, django_capture_on_commit_callbacks: Any, collected: Any
) -> None:
    lab_vm_for(world.alice, hello)
    set_window(hello, opens=-5, due=0, closes=5)
    hello.due_at = timezone.now() + timedelta(seconds=2)
    hello.save()
    archive = collected.return_value

    def slow(*args: object) -> CleanArchive:
        with mock.patch("django.utils.timezone.now", return_value=hello.due_at + timedelta(1)):
            return archive

    collected.side_effect = slow
    attempt = start(world.alice, hello, SUBMIT, django_capture_on_commit_callbacks)
    assert not attempt.is_late
    assert attempt.created_at < hello.due_at


@pytest.mark.parametrize(
    ("persona", "status"),
    [("alice", 200), ("tess", 200), ("bob", 404), ("charlie", 404)],
)
def test_stored_files_are_for_their_student_and_the_cohorts_instructors(
    world: World,
    hello: Assignment,
    django_capture_on_commit_callbacks: Any,
    persona: str,
    status: int,
) -> None:
    lab_vm_for(world.alice, hello)
    attempt = start(world.alice, hello, SUBMIT, django_capture_on_commit_callbacks)
    url = f"/exercises/attempts/{attempt.pk}/files.tar.gz"
    response = client_for(getattr(world, persona)).get(url)
    assert response.status_code == status
    if status == 200:
        assert attempt.files is not None
        assert response["Content-Type"] == "application/gzip"
        assert response["X-Content-SHA256"] == attempt.files.sha256
        assert response.content == bytes(attempt.files.archive)
    anonymous = Client().get(url)
    assert anonymous.status_code == 302


def test_an_attempt_without_files_has_none_to_download(
    world: World, hello: Assignment, django_capture_on_commit_callbacks: Any
) -> None:
    lab_vm_for(world.alice, hello)
    attempt = start(world.alice, hello, CHECK, django_capture_on_commit_callbacks)
    response = client_for(world.alice).get(f"/exercises/attempts/{attempt.pk}/files.tar.gz")
    assert response.status_code == 404


def test_the_attempt_page_lists_the_files_graded_and_what_was_left_out(
    world: World, hello: Assignment, django_capture_on_commit_callbacks: Any, collected: Any
) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("root/hello/hello.c")
        info.size = len(HELLO_C)
        tar.addfile(info, io.BytesIO(HELLO_C))
        link = tarfile.TarInfo("root/hello/hello.h")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    collected.return_value = sanitize(raw.getvalue(), [ArtifactSpec(path="/root/hello")])
    lab_vm_for(world.alice, hello)
    attempt = start(world.alice, hello, SUBMIT, django_capture_on_commit_callbacks)
    page = client_for(world.alice).get(f"/exercises/attempts/{attempt.pk}/").content.decode()
    assert "/root/hello/hello.c" in page
    assert "Skipped /root/hello/hello.h: a symbolic link" in page
    assert f"/exercises/attempts/{attempt.pk}/files.tar.gz" in page
