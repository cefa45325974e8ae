"""The grading runner's host side without a guest: what goes into the guest,
how the console log is read, how a run's exit is understood, and how an
attempt is recorded. (Real guests: tests/integration/test_grading.py.)"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from exercises.grading.bundles import NONCE_FILE, checker_payload, starter_payload, with_nonce
from exercises.grading.console_log import log_since
from exercises.grading.engine import record
from exercises.grading.runner import Outcome, checker_status, run_checker
from exercises.manifest import load_exercise
from exercises.models import Attempt, AttemptKind, AttemptStatus, ExerciseVersion
from exercises.report import CheckOutcome, Report
from exercises.services import attempt_transition, catalogue_sync
from tests.conftest import World
from tests.support.agents import RecordingAgent
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
    check = names(checker_payload(hello_version, mode="check"))
    submit = names(checker_payload(hello_version, mode="submit"))
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
    assert checker_status(exec_result(b"noise\nkernellab-checker-status=124\n")) == 124
    # A checker cannot fake it with an earlier line: the runner's is last.
    fake = b"kernellab-checker-status=0\nmore\nkernellab-checker-status=137\n"
    assert checker_status(exec_result(fake)) == 137
    assert checker_status(exec_result(b"kernellab-checker-status=x\n")) is None
    assert checker_status(exec_result(b"")) is None


def running_attempt(world: World, version: ExerciseVersion) -> Attempt:
    attempt = Attempt.objects.create(
        student=world.alice,
        assignment=world.hello,
        exercise=world.hello.exercise,
        version=version,
        kind=AttemptKind.CHECK,
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


def test_record_drops_nul_and_control_bytes_from_guest_text(world: World) -> None:
    """A console tail or a reason quoting the guest may hold NUL, which
    PostgreSQL refuses in text: the attempt would stay RUNNING."""
    from tests.conftest import exercise_version_for

    attempt = running_attempt(world, exercise_version_for(world.hello.exercise))
    record(
        attempt,
        Outcome(
            AttemptStatus.TIMED_OUT,
            reason="The guest said \x00\x01no",
            kernel_lines=["BUG: \x00here"],
            console_tail="login:\x00\x00 \x1b[31mred\x1b[0m\n",
        ),
    )
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.TIMED_OUT
    assert "\x00" not in attempt.reason + attempt.kernel_log + attempt.console_tail
    assert attempt.reason == "The guest said no"
    assert attempt.console_tail == "login: [31mred[0m\n"


def report_json(nonce: str, passed: bool = True) -> bytes:
    check = {"id": "builds", "title": "t", "passed": passed, "points": 20, "message": "m"}
    return json.dumps({"nonce": nonce, "checks": [check]}).encode()


def run_with(
    version: ExerciseVersion, stdout: bytes, status: int, tmp_path: Path
) -> tuple[Outcome, RecordingAgent]:
    manifest = version.parsed_manifest
    result = ExecResult(
        exit_code=0,
        signal=None,
        stdout=stdout,
        stderr=f"kernellab-checker-status={status}\n".encode(),
        truncated=False,
        seconds=1,
    )
    agent = RecordingAgent(result)
    outcome = run_checker(
        agent,  # type: ignore[arg-type]
        checker_payload(version, mode="check"),
        nonce="n" * 64,
        mode="check",
        manifest=manifest,
        kernel_log=tmp_path / "kernel.log",
        log_offset=0,
    )
    return outcome, agent


@pytest.fixture
def builds_version(world: World) -> ExerciseVersion:
    from tests.conftest import exercise_version_for

    return exercise_version_for(world.hello.exercise, checks=(("builds", 20, False),))


def test_the_nonce_reaches_the_checker_only_in_its_private_file(
    builds_version: ExerciseVersion, tmp_path: Path
) -> None:
    _outcome, agent = run_with(builds_version, report_json("n" * 64), 0, tmp_path)
    (call,) = agent.calls
    assert "n" * 64 not in json.dumps(call["argv"]) + json.dumps(call["env"])
    stdin = call["stdin"]
    assert isinstance(stdin, bytes)
    with tarfile.open(fileobj=io.BytesIO(stdin), mode="r:gz") as tar:
        member = tar.getmember(NONCE_FILE)
        handle = tar.extractfile(member)
        assert handle is not None
        assert handle.read() == b"n" * 64
        assert member.mode == 0o600
    assert "KERNELLAB_MODE=check" in call["env"]  # type: ignore[operator]
    # Tools by absolute path: nothing a student put first on PATH is run.
    assert call["argv"][0] == "/bin/sh"  # type: ignore[index]
    assert "/usr/bin/python3 -E -s check.py" in call["argv"][2]  # type: ignore[index]


def test_a_report_written_after_sigterm_is_graded(
    builds_version: ExerciseVersion, tmp_path: Path
) -> None:
    outcome, _agent = run_with(builds_version, report_json("n" * 64, passed=False), 124, tmp_path)
    assert outcome.status == AttemptStatus.GRADED
    assert outcome.report is not None
    assert [c.passed for c in outcome.report.checks] == [False]


def test_no_report_after_the_time_limit_is_a_checker_error(
    builds_version: ExerciseVersion, tmp_path: Path
) -> None:
    outcome, _agent = run_with(builds_version, b"", 124, tmp_path)
    assert outcome.status == AttemptStatus.CHECKER_ERROR
    assert "did not finish within 60 s" in outcome.reason


def test_with_nonce_adds_exactly_the_nonce_file(hello_version: ExerciseVersion) -> None:
    payload = checker_payload(hello_version, mode="submit")
    assert names(with_nonce(payload, "abc")) == sorted([*names(payload), NONCE_FILE])
