"""One checker run in one guest, and what it means.

Each run is one guest-agent exec of guest_scripts.CHECKER_RUNNER: a fresh
copy of the checker, the nonce in a file the checker library reads and
deletes, a time limit (SIGTERM first, so the checker library can still report
which check was cut off), an output cap. The report must carry the nonce; it
is parsed by exercises.report, and anything wrong with it (malformed, too
big, nonce-less) is a CHECKER_ERROR with a reason, never an exception.

A guest whose agent stops answering is looked at from outside: its console
log (kernel messages, ttyS0) since the run began decides between "kernel
crashed" (a panic or oops is there) and "timed out", and its tail goes into
the attempt.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from exercises.artifacts.install import INSTALL_TIMEOUT_SECONDS, install_artifacts
from exercises.grading.bundles import checker_payload, starter_payload, with_nonce
from exercises.grading.console_log import log_since, log_size
from exercises.grading.guest_scripts import CHECKER_RUNNER, GUEST_PATH, SH, STARTER_INSTALLER
from exercises.manifest import ExerciseManifest, Mode
from exercises.models import AttemptStatus, ExerciseVersion
from exercises.report import Report, ReportError, parse_report, scan_kernel_log
from vms.hypervisor.agent import ExecResult, GuestAgent
from vms.hypervisor.errors import (
    AgentProtocolError,
    AgentTimeout,
    AgentUnavailable,
    HypervisorError,
)
from vms.models import LabVM

log = logging.getLogger(__name__)

# Grace between the checker's SIGTERM and SIGKILL, and the agent's own margin.
TERM_GRACE_SECONDS = 5
AGENT_MARGIN_SECONDS = 15
CONSOLE_TAIL_BYTES = 8 << 10
STDERR_TAIL_BYTES = 4000
REBOOT_TIMEOUT_SECONDS = 180
CLEANUP_SECONDS = 60  # destroying the clean guest, removing its folder
TIMED_OUT_STATUSES = (124, 137)  # coreutils timeout: sent SIGTERM / had to SIGKILL


@dataclass
class Outcome:
    status: AttemptStatus
    report: Report | None = None
    reason: str = ""
    kernel_lines: list[str] = field(default_factory=list)
    console_tail: str = ""


def place_starter(agent: GuestAgent, version: ExerciseVersion) -> None:
    """Copy the exercise's starter files into the guest's /root (lab start)."""
    payload = starter_payload(version)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        if not tar.getmembers():
            return
    result = agent.exec(
        [SH, "-c", STARTER_INSTALLER, "starter"], stdin=payload, timeout=60, env=[GUEST_PATH]
    )
    if result.exit_code != 0:
        raise HypervisorError(f"placing starter files failed: {result.stderr[-500:]!r}")


def place_starter_in_lab(sender: object, *, vm: LabVM, agent: GuestAgent, **kwargs: object) -> None:
    """vms.signals.lab_guest_ready: a lab's fresh guest gets its exercise's starter files."""
    version = vm.exercise.current_version
    if version is not None:
        place_starter(agent, version)


def run_checker(
    agent: GuestAgent,
    payload: bytes,
    *,
    nonce: str,
    mode: Mode,
    manifest: ExerciseManifest,
    kernel_log: Path,
    log_offset: int,
) -> Outcome:
    """Run the checker once in the guest behind ``agent`` and judge its report."""
    grading = manifest.grading
    limit = grading.checker_timeout_seconds
    env = [
        GUEST_PATH,
        "HOME=/root",
        "LANG=C.UTF-8",
        f"KERNELLAB_MODE={mode}",
        "KERNELLAB_HOME=/root",
    ]
    argv = [
        SH,
        "-c",
        CHECKER_RUNNER,
        "kernellab-runner",
        str(grading.output_limit_bytes + 1),
        str(limit),
        str(TERM_GRACE_SECONDS),
    ]
    try:
        result = agent.exec(
            argv,
            stdin=with_nonce(payload, nonce),
            env=env,
            timeout=limit + TERM_GRACE_SECONDS + AGENT_MARGIN_SECONDS,
            output_cap=grading.output_limit_bytes + 1,
        )
    except AgentProtocolError as exc:
        return Outcome(AttemptStatus.CHECKER_ERROR, reason=f"The guest agent misbehaved: {exc}")
    except (AgentUnavailable, AgentTimeout) as exc:
        return _guest_trouble(agent, kernel_log, log_offset, str(exc))
    kernel_lines = scan_kernel_log(log_since(kernel_log, log_offset))
    try:
        report = parse_report(result.stdout, nonce=nonce, manifest=manifest, mode=mode)
    except ReportError as exc:
        if checker_status(result) in TIMED_OUT_STATUSES:
            reason = f"The checker did not finish within {limit} s and was stopped."
        else:
            detail = stderr_tail(result)
            reason = f"The checker's report was not usable: {exc.reason}" + (
                f"\n\nChecker diagnostics:\n{detail}" if detail else ""
            )
        return Outcome(AttemptStatus.CHECKER_ERROR, reason=reason, kernel_lines=kernel_lines)
    # A checker stopped by SIGTERM still reports (the checks it did not reach
    # fail, saying so): that report is graded.
    for warning in report.warnings:
        log.warning("checker report: %s", warning)
    return Outcome(AttemptStatus.GRADED, report=report, kernel_lines=kernel_lines)


def check_in_guest(
    agent: GuestAgent, version: ExerciseVersion, *, nonce: str, kernel_log: Path
) -> Outcome:
    """A Check: the checker (no hidden tests) in the student's own guest."""
    return run_checker(
        agent,
        checker_payload(version, mode="check"),
        nonce=nonce,
        mode="check",
        manifest=version.parsed_manifest,
        kernel_log=kernel_log,
        log_offset=log_size(kernel_log),
    )


def submit_in_clean_guest(
    agent: GuestAgent,
    version: ExerciseVersion,
    *,
    archive: bytes,
    nonce: str,
    kernel_log: Path,
) -> Outcome:
    """A Submit, in a clean guest: the stored files in place, a reboot if the
    exercise asks, then the checker with the hidden tests."""
    manifest = version.parsed_manifest
    install_artifacts(agent, manifest, archive)
    offset = log_size(kernel_log)
    if manifest.grading.reboot_before_submit:
        reboot(agent, timeout=REBOOT_TIMEOUT_SECONDS)
    return run_checker(
        agent,
        checker_payload(version, mode="submit"),
        nonce=nonce,
        mode="submit",
        manifest=manifest,
        kernel_log=kernel_log,
        log_offset=offset,
    )


def longest_grading_seconds(manifest: ExerciseManifest, mode: Mode) -> int:
    """The longest a healthy grading of this exercise can take once running:
    the reaper treats an attempt as lost only after this (plus a grace)."""
    checker = manifest.grading.checker_timeout_seconds + TERM_GRACE_SECONDS + AGENT_MARGIN_SECONDS
    if mode == "check":
        return checker
    reboot = REBOOT_TIMEOUT_SECONDS if manifest.grading.reboot_before_submit else 0
    return (
        settings.VM_BOOT_TIMEOUT_SECONDS  # a clean guest booted cold (no pool entry)
        + INSTALL_TIMEOUT_SECONDS
        + reboot
        + checker
        + CLEANUP_SECONDS
    )


def checker_status(result: ExecResult) -> int | None:
    for line in reversed(result.stderr.decode("utf-8", errors="replace").splitlines()):
        if line.startswith("kernellab-checker-status="):
            try:
                return int(line.split("=", 1)[1])
            except ValueError:
                return None
    return None


def stderr_tail(result: ExecResult) -> str:
    lines = result.stderr.decode("utf-8", errors="replace").splitlines()
    kept = [line for line in lines if not line.startswith("kernellab-checker-status=")]
    return "\n".join(kept)[-STDERR_TAIL_BYTES:]


def _guest_trouble(agent: GuestAgent, kernel_log: Path, log_offset: int, error: str) -> Outcome:
    """The agent stopped answering during the run: did the kernel die?"""
    time.sleep(1)  # let the last console lines reach the log
    console = log_since(kernel_log, log_offset)
    lines = scan_kernel_log(console)
    alive = _agent_alive(agent)
    tail = console[-CONSOLE_TAIL_BYTES:]
    crashed = not alive and any(
        marker in line
        for line in lines
        for marker in ("Kernel panic", "Oops", "BUG:", "general protection fault", "RIP:")
    )
    if crashed:
        return Outcome(
            AttemptStatus.KERNEL_CRASHED,
            reason="The kernel crashed while your work was being graded.",
            kernel_lines=lines,
            console_tail=tail,
        )
    what = "stopped responding" if not alive else "did not finish in time"
    return Outcome(
        AttemptStatus.TIMED_OUT,
        reason=f"The guest {what} while your work was being graded ({error}).",
        kernel_lines=lines,
        console_tail=tail,
    )


def _agent_alive(agent: GuestAgent) -> bool:
    for _ in range(3):
        try:
            if agent.ping():
                return True
        except HypervisorError:
            pass
        time.sleep(1)
    return False


def reboot(agent: GuestAgent, timeout: float) -> None:
    """Reboot the guest and wait for its agent to answer from the new boot."""
    boot_id = ["/usr/bin/cat", "/proc/sys/kernel/random/boot_id"]
    before = agent.exec(boot_id, timeout=10).stdout
    with contextlib.suppress(HypervisorError):  # the agent may go down before it answers
        agent.exec(["/usr/bin/systemctl", "reboot"], timeout=20)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            if not agent.ping():
                continue
            now = agent.exec(boot_id, timeout=10).stdout
        except HypervisorError:
            continue
        if now and now != before:
            agent.set_time()
            return
    raise HypervisorError(f"the grading guest did not come back from a reboot in {timeout:.0f}s")
