"""The grading runner's host side without a guest: what goes into the guest,
how the console log is read, how a run's exit is understood, and how an
attempt is recorded. (Real guests: tests/integration/test_grading.py.)"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from exercises.grading import (
    Outcome,
    _checker_status,
    checker_payload,
    log_since,
    record,
    starter_payload,
)
from exercises.manifest import load_exercise
from exercises.models import Attempt, AttemptKind, AttemptStatus, ExerciseVersion
from exercises.report import CheckOutcome, Report
from exercises.services import attempt_transition, catalogue_sync
from tests.conftest import World
from vms.hypervisor.agent import ExecResult

CATALOGUE = Path(__file__).resolve().parents[2] / "exercises" / "catalogue"


def names(payload: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        return sorted(member.name for member in tar.getmembers())


@pytest.fixture
def hello_version(db: None) -> ExerciseVersion:
    catalogue_sync(sources=[load_exercise(CATALOGUE / "hello-module")])
    from exercises.models import Exercise

    version = Exercise.objects.get(slug="hello-module").current_version
    assert version is not None
    return version


def test_check_payload_never_has_the_hidden_tests(
    hello_version: ExerciseVersion,
) -> None:
    check = names(checker_payload(hello_version, submit=False))
    submit = names(checker_payload(hello_version, submit=True))
    assert "check.py" in check
    assert "kernellab_check.py" in check
    assert not any(name.startswith("hidden") for name in check)
    assert not any(name.startswith(("check/", "starter")) for name in check)
    # At Submit the hidden tests sit next to check.py, where the library looks.
    assert "hidden/reload.py" in submit
    assert set(check) < set(submit)


def test_starter_payload_is_the_starter_folder_at_the_top(hello_version: ExerciseVersion) -> None:
    assert names(starter_payload(hello_version)) == ["hello", "hello/Makefile", "hello/hello.c"]


def test_log_since_reads_what_came_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    assert log_since(log, 0) == ""  # no log yet
    log.write_text("before\n")
    offset = log.stat().st_size
    with log.open("a") as handle:
        handle.write("BUG: kernel NULL pointer dereference\n")
    assert log_since(log, offset) == "BUG: kernel NULL pointer dereference\n"
    # Rotated meanwhile (smaller than the offset): read it from its start.
    log.write_text("Oops: 0002\n")
    assert log_since(log, 10_000) == "Oops: 0002\n"
    # Bounded, keeping the newest part.
    log.write_text("x" * 100 + "tail")
    assert log_since(log, 0, limit=4) == "tail"


def exec_result(stderr: bytes) -> ExecResult:
    return ExecResult(
        exit_code=0, signal=None, stdout=b"", stderr=stderr, truncated=False, seconds=0.1
    )


def test_the_checkers_exit_status_is_read_from_the_runners_last_line() -> None:
    assert _checker_status(exec_result(b"noise\nkernellab-checker-status=124\n")) == 124
    # A checker cannot fake it with an earlier line: the runner's is last.
    fake = b"kernellab-checker-status=0\nmore\nkernellab-checker-status=137\n"
    assert _checker_status(exec_result(fake)) == 137
    assert _checker_status(exec_result(b"kernellab-checker-status=x\n")) is None
    assert _checker_status(exec_result(b"")) is None


def running_attempt(world: World, version: ExerciseVersion) -> Attempt:
    attempt = Attempt.objects.create(
        student=world.alice,
        assignment=world.hello,
        exercise=world.hello.exercise,
        version=version,
        kind=AttemptKind.SELF_CHECK,
        max_score=10,
    )
    assert attempt_transition(attempt.pk, AttemptStatus.QUEUED, AttemptStatus.RUNNING)
    return attempt


def test_record_stores_results_once(world: World) -> None:
    from tests.conftest import exercise_version_for

    version = exercise_version_for(world.hello.exercise)
    attempt = running_attempt(world, version)
    report = Report(
        checks=[CheckOutcome("works", "Check works", True, 10, 10, "fine", False)], warnings=[]
    )
    outcome = Outcome(AttemptStatus.GRADED, report=report, kernel_lines=["WARNING: x"])
    record(attempt, outcome)
    record(attempt, outcome)  # a duplicate delivery changes nothing
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.GRADED
    assert attempt.score == 10
    assert attempt.kernel_log == "WARNING: x"
    assert attempt.finished_at is not None
    assert [(r.check_id, r.passed, r.points) for r in attempt.results.all()] == [
        ("works", True, 10)
    ]


def test_record_of_a_crash_keeps_the_console(world: World) -> None:
    from tests.conftest import exercise_version_for

    attempt = running_attempt(world, exercise_version_for(world.hello.exercise))
    record(
        attempt,
        Outcome(
            AttemptStatus.KERNEL_CRASHED,
            reason="The kernel crashed while your work was being graded.",
            kernel_lines=["Kernel panic - not syncing: boom"],
            console_tail="...Kernel panic - not syncing: boom\n",
        ),
    )
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.KERNEL_CRASHED
    assert attempt.score == 0
    assert "boom" in attempt.console_tail
    assert not attempt.results.exists()
