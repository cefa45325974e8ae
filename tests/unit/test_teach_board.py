"""The progress board, its live cell endpoint, and a student's drill-down."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from exercises.models import Attempt, AttemptComment, AttemptKind, AttemptStatus, CheckResult
from labplatform.accounts.models import User
from labplatform.courses.board.selectors import CellState, board_cell_get, board_for_cohort
from labplatform.courses.models import Assignment, GradeOverride, Role
from labplatform.courses.services import enrolment_set
from tests.conftest import World, client_for, exercise_version_for, make_user
from tests.support.labs import lab_vm_for
from vms.models import ConsoleMode, ConsoleSession, VMState

# --- helpers -------------------------------------------------------------------


@pytest.fixture
def ta(world: World) -> User:
    user = make_user("tina")
    enrolment_set(user=user, cohort=world.autumn, role=Role.TA)
    return user


def attempt_for(
    student: User,
    assignment: Assignment,
    *,
    kind: AttemptKind = AttemptKind.SUBMIT,
    status: AttemptStatus = AttemptStatus.GRADED,
    score: int = 10,
    **extra: object,
) -> Attempt:
    version = exercise_version_for(assignment.exercise)
    return Attempt.objects.create(
        student=student,
        assignment=assignment,
        exercise=assignment.exercise,
        version=version,
        kind=kind,
        status=status,
        score=score,
        max_score=10,
        **extra,
    )


def state_of(world: World, student: User | None = None) -> CellState:
    _row, cell = board_cell_get(
        cohort=world.autumn,
        student_id=(student or world.alice).pk,
        assignment_id=world.hello.pk,
    )
    return cell.state


def board_url(world: World) -> str:
    return reverse("cohort_board", args=[world.autumn.pk])


def cell_url(world: World, student: User, assignment: Assignment) -> str:
    url = reverse("board_cell", args=[world.autumn.pk])
    return f"{url}?student={student.pk}&assignment={assignment.pk}"


def work_url(world: World, student: User) -> str:
    return reverse("student_work", args=[world.autumn.pk, student.pk])


# --- who sees the board ----------------------------------------------------------


def test_anonymous_is_sent_to_log_in(world: World) -> None:
    response = Client().get(board_url(world))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("persona", ["alice", "bob", "charlie"])
def test_students_and_other_courses_instructors_get_404(world: World, persona: str) -> None:
    response = client_for(getattr(world, persona)).get(board_url(world))
    assert response.status_code == 404


def test_instructor_sees_every_student_and_assignment(world: World) -> None:
    response = client_for(world.tess).get(board_url(world))
    assert response.status_code == 200
    body = response.content.decode()
    assert f'data-testid="board-row" data-student="{world.alice.pk}"' in body
    assert "Hello, kernel module" in body
    assert f'data-student="{world.bob.pk}"' not in body  # another course's student


def test_ta_sees_the_board_without_the_vms_tab(world: World, ta: User) -> None:
    response = client_for(ta).get(board_url(world))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-tab="board"' in body
    assert 'data-tab="vms"' not in body


def test_instructor_gets_the_vms_tab(world: World) -> None:
    body = client_for(world.tess).get(board_url(world)).content.decode()
    assert 'data-tab="vms"' in body
    assert 'data-tab="roster"' in body


def count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_board_queries_do_not_grow_with_the_cohort(
    world: World, django_assert_max_num_queries: Any
) -> None:
    client = client_for(world.tess)
    attempt_for(world.alice, world.hello, score=3)
    lab_vm_for(world.alice, world.hello)
    one_student = count_queries(client, board_url(world))
    for n in range(12):
        student = make_user(f"student{n}")
        enrolment_set(user=student, cohort=world.autumn, role=Role.STUDENT)
        attempt_for(student, world.hello, score=n % 11)
        attempt_for(student, world.hello, kind=AttemptKind.CHECK)
        lab_vm_for(student, world.hello)
    with django_assert_max_num_queries(one_student):
        response = client.get(board_url(world))
    assert response.content.decode().count('data-testid="board-row"') == 13


# --- the cell endpoint ------------------------------------------------------------


def test_cell_endpoint_gives_the_cell_and_the_row_total(world: World) -> None:
    attempt_for(world.alice, world.hello, score=7)
    response = client_for(world.tess).get(cell_url(world, world.alice, world.hello))
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "failed"
    assert Decimal(body["total"]) == 7
    assert 'data-state="failed"' in body["html"]
    assert body["html"].lstrip().startswith("<td")


def test_cell_endpoint_for_ta(world: World, ta: User) -> None:
    assert client_for(ta).get(cell_url(world, world.alice, world.hello)).status_code == 200


@pytest.mark.parametrize("persona", ["alice", "charlie"])
def test_cell_endpoint_404_for_others(world: World, persona: str) -> None:
    response = client_for(getattr(world, persona)).get(cell_url(world, world.alice, world.hello))
    assert response.status_code == 404


def test_cell_endpoint_404_for_a_student_or_assignment_of_another_cohort(world: World) -> None:
    client = client_for(world.tess)
    assert client.get(cell_url(world, world.bob, world.hello)).status_code == 404
    assert client.get(cell_url(world, world.alice, world.strace)).status_code == 404


def test_cell_endpoint_404_on_bad_parameters(world: World) -> None:
    url = reverse("board_cell", args=[world.autumn.pk])
    assert client_for(world.tess).get(url + "?student=x&assignment=1").status_code == 404


# --- cell states -----------------------------------------------------------------


def test_nothing_done_is_not_started(world: World) -> None:
    assert state_of(world) == CellState.NOT_STARTED


def test_a_destroyed_vm_alone_is_not_started(world: World) -> None:
    lab_vm_for(world.alice, world.hello, VMState.DESTROYED)
    assert state_of(world) == CellState.NOT_STARTED


def test_a_live_vm_is_working(world: World) -> None:
    lab_vm_for(world.alice, world.hello, VMState.STOPPED)
    assert state_of(world) == CellState.WORKING


def test_a_check_is_working(world: World) -> None:
    attempt_for(world.alice, world.hello, kind=AttemptKind.CHECK, score=10)
    assert state_of(world) == CellState.WORKING


def test_an_open_submit_is_working_and_grading(world: World) -> None:
    attempt_for(world.alice, world.hello, status=AttemptStatus.QUEUED, score=0)
    _row, cell = board_cell_get(
        cohort=world.autumn, student_id=world.alice.pk, assignment_id=world.hello.pk
    )
    assert cell.state == CellState.WORKING
    assert cell.grading


def test_an_ungraded_submit_is_working(world: World) -> None:
    attempt_for(world.alice, world.hello, status=AttemptStatus.CHECKER_ERROR, score=0)
    assert state_of(world) == CellState.WORKING


def test_a_full_marks_submit_is_passed(world: World) -> None:
    attempt_for(world.alice, world.hello, score=10)
    assert state_of(world) == CellState.PASSED


def test_a_submit_below_full_marks_is_failed(world: World) -> None:
    attempt_for(world.alice, world.hello, score=9)
    assert state_of(world) == CellState.FAILED


def test_a_crashed_kernel_submit_is_failed(world: World) -> None:
    attempt_for(world.alice, world.hello, status=AttemptStatus.KERNEL_CRASHED, score=0)
    assert state_of(world) == CellState.FAILED


def test_a_preview_by_staff_does_not_count(world: World) -> None:
    attempt_for(world.alice, world.hello, kind=AttemptKind.CHECK, is_preview=True)
    assert state_of(world) == CellState.NOT_STARTED


def test_an_override_to_full_marks_is_passed(world: World) -> None:
    attempt_for(world.alice, world.hello, score=4)
    GradeOverride.objects.create(
        assignment=world.hello,
        student=world.alice,
        score=Decimal(10),
        reason="the checker was wrong",
        created_by=world.tess,
    )
    row, cell = board_cell_get(
        cohort=world.autumn, student_id=world.alice.pk, assignment_id=world.hello.pk
    )
    assert cell.state == CellState.PASSED
    assert row.total == 10


def test_late_submit_with_full_marks_is_passed_with_its_late_mark(world: World) -> None:
    now = timezone.now()
    Assignment.objects.filter(pk=world.hello.pk).update(
        opens_at=now - timedelta(days=5),
        due_at=now - timedelta(days=2),
        closes_at=now + timedelta(days=2),
        late_penalty_percent=Decimal(10),
    )
    world.hello.refresh_from_db()
    attempt_for(
        world.alice,
        world.hello,
        score=10,
        is_late=True,
        created_at=world.hello.due_at + timedelta(hours=30),
    )
    row, cell = board_cell_get(
        cohort=world.autumn, student_id=world.alice.pk, assignment_id=world.hello.pk
    )
    assert cell.state == CellState.PASSED
    assert cell.grade.late_units == 2
    assert row.total == 8
    html = client_for(world.tess).get(cell_url(world, world.alice, world.hello)).json()["html"]
    assert "late 2d" in html


def test_running_vm_shows_a_watch_link(world: World) -> None:
    vm = lab_vm_for(world.alice, world.hello)
    html = client_for(world.tess).get(cell_url(world, world.alice, world.hello)).json()["html"]
    assert reverse("console_watch", args=[vm.pk]) in html


def test_board_rows_cover_only_current_students(world: World) -> None:
    board = board_for_cohort(cohort=world.autumn)
    assert [row.student for row in board.rows] == [world.alice]


# --- the drill-down -----------------------------------------------------------------


def test_drill_down_anonymous_is_sent_to_log_in(world: World) -> None:
    response = Client().get(work_url(world, world.alice))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("persona", ["alice", "bob", "charlie"])
def test_drill_down_404_for_students_and_other_instructors(world: World, persona: str) -> None:
    response = client_for(getattr(world, persona)).get(work_url(world, world.alice))
    assert response.status_code == 404


def test_drill_down_404_for_a_student_of_another_cohort(world: World) -> None:
    assert client_for(world.tess).get(work_url(world, world.bob)).status_code == 404


def test_drill_down_404_for_a_staff_member_in_the_url(world: World) -> None:
    assert client_for(world.tess).get(work_url(world, world.tess)).status_code == 404


def test_drill_down_for_ta(world: World, ta: User) -> None:
    assert client_for(ta).get(work_url(world, world.alice)).status_code == 200


def test_drill_down_shows_attempts_newest_first_with_hidden_checks(world: World) -> None:
    first = attempt_for(world.alice, world.hello, kind=AttemptKind.CHECK, score=3)
    second = attempt_for(
        world.alice,
        world.hello,
        score=5,
        kernel_log="BUG: kernel NULL pointer dereference",
        console_tail="hello: loading out-of-tree module",
    )
    Attempt.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=1))
    CheckResult.objects.create(
        attempt=second,
        position=0,
        check_id="secret",
        title="The hidden one",
        passed=False,
        points=0,
        max_points=5,
        hidden=True,
    )
    AttemptComment.objects.create(attempt=second, author=world.tess, body="Look at line 12")
    body = client_for(world.tess).get(work_url(world, world.alice)).content.decode()
    assert body.index(f"#{second.pk}") < body.index(f"#{first.pk}")
    assert "The hidden one" in body
    assert "BUG: kernel NULL pointer dereference" in body
    assert "hello: loading out-of-tree module" in body
    assert "Look at line 12" in body


def test_drill_down_links_a_regrade_to_its_original(world: World) -> None:
    original = attempt_for(world.alice, world.hello, score=5)
    regrade = attempt_for(world.alice, world.hello, score=10, regrade_of=original)
    body = client_for(world.tess).get(work_url(world, world.alice)).content.decode()
    assert f'Regrade of <a href="{reverse("attempt_detail", args=[original.pk])}"' in body
    assert reverse("attempt_detail", args=[regrade.pk]) in body


def test_drill_down_offers_watch_when_the_vm_runs(world: World) -> None:
    vm = lab_vm_for(world.alice, world.hello)
    body = client_for(world.tess).get(work_url(world, world.alice)).content.decode()
    assert reverse("console_watch", args=[vm.pk]) in body


def test_drill_down_of_a_former_student_with_work(world: World) -> None:
    attempt_for(world.bob, world.hello, score=6)  # bob once worked on autumn's assignment
    response = client_for(world.tess).get(work_url(world, world.bob))
    assert response.status_code == 200
    assert "no longer in the cohort" in response.content.decode()


def test_drill_down_queries_do_not_grow_with_the_attempts(
    world: World, django_assert_max_num_queries: Any
) -> None:
    def one_more(n: int) -> None:
        attempt = attempt_for(world.alice, world.hello, score=n)
        AttemptComment.objects.create(attempt=attempt, author=world.tess, body=f"note {n}")
        CheckResult.objects.create(
            attempt=attempt,
            position=0,
            check_id="works",
            title="Works",
            passed=False,
            points=n,
            max_points=10,
        )

    client = client_for(world.tess)
    one_more(0)
    one_attempt = count_queries(client, work_url(world, world.alice))
    for n in range(1, 8):
        one_more(n)
    with django_assert_max_num_queries(one_attempt):
        response = client.get(work_url(world, world.alice))
    assert response.content.decode().count('data-testid="student-attempt"') == 8


# --- recordings ------------------------------------------------------------------


def test_recording_page_uses_asciinema_player_from_npm(world: World, tmp_path: Path) -> None:
    cast = tmp_path / "s.cast"
    cast.write_text('{"version": 2, "width": 80, "height": 24}\n[0.5, "o", "hello\\r\\n"]\n')
    session = ConsoleSession.objects.create(
        vm=lab_vm_for(world.alice, world.hello),
        user=world.alice,
        mode=ConsoleMode.READ_WRITE,
        recording=str(cast),
    )
    body = client_for(world.tess).get(reverse("recording_play", args=[session.pk])).content
    assert b"vendor/asciinema-player/asciinema-player.min.js" in body
    assert b"js/player.js" not in body
    assert finders.find("vendor/asciinema-player/asciinema-player.min.js")
    assert finders.find("vendor/asciinema-player/asciinema-player.css")


def test_drill_down_links_the_recordings(world: World, tmp_path: Path) -> None:
    vm = lab_vm_for(world.alice, world.hello, VMState.DESTROYED)
    ConsoleSession.objects.create(
        vm=vm, user=world.alice, mode=ConsoleMode.READ_WRITE, recording=str(tmp_path / "a.cast")
    )
    body = client_for(world.tess).get(work_url(world, world.alice)).content.decode()
    assert reverse("recording_list", args=[vm.pk]) in body
