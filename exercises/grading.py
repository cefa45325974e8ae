"""Grading: run an exercise's checker in a guest and record what it reports.

Check (self-check) runs in the student's own guest: fast, advisory, since the
student is root there. Submit (authoritative) collects the artifacts the
manifest declares from the student's guest, boots a clean guest, copies them
in, reboots it if the exercise asks, and runs the checker with the hidden
tests there; the clean guest is destroyed afterwards, whatever happened.

Each run is one guest-agent exec of a small shell script (GUEST_RUNNER): it
unpacks a fresh copy of the checker from stdin into a private directory named
after the attempt's nonce, runs it under `timeout` (SIGTERM first, so the
checker library can still report which check was cut off), caps what it
prints, and deletes the directory. The report must carry the nonce; it is
parsed by exercises.report, and anything wrong with it (malformed, too big,
late, nonce-less) is a CHECKER_ERROR with a reason, never an exception.

A guest whose agent stops answering is looked at from outside: its console
log (kernel messages, ttyS0) since the attempt began decides between "kernel
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

from django.db import transaction
from django.utils import timezone

from exercises.manifest import ExerciseManifest, Mode
from exercises.models import Attempt, AttemptKind, AttemptStatus, CheckResult, ExerciseVersion
from exercises.report import Report, ReportError, parse_report, scan_kernel_log
from exercises.services import attempt_transition
from vms import lifecycle
from vms.hypervisor.agent import ExecResult, GuestAgent
from vms.hypervisor.errors import (
    AgentProtocolError,
    AgentTimeout,
    AgentUnavailable,
    HypervisorError,
)
from vms.models import LabVM, VMState
from vms.sandbox import grading_guest

log = logging.getLogger(__name__)

GUEST_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Grace between the checker's SIGTERM and SIGKILL, and the agent's own margin.
TERM_GRACE_SECONDS = 5
AGENT_MARGIN_SECONDS = 15
ARTIFACTS_MAX_BYTES = 16 << 20
CONSOLE_TAIL_BYTES = 8 << 10
STDERR_TAIL_BYTES = 4000

# $1 directory, $2 output cap (bytes), $3 time limit (s), $4 grace (s).
# The checker's stdout goes through `head -c` (the cap), its stderr through
# `tail -c` (diagnostics); its exit status is written beside them. `timeout`
# signals its own process group only, so `head` survives to pass on what the
# checker printed before the SIGTERM.
GUEST_RUNNER = r"""
set -u
d=$1 cap=$2 limit=$3 grace=$4
umask 077
rm -rf "$d" && mkdir -m 0700 "$d" || { echo "cannot create $d" >&2; exit 90; }
tar -xzf - -C "$d" --no-same-owner || { echo "cannot unpack" >&2; rm -rf "$d"; exit 91; }
cd "$d" || exit 92
{ { timeout -s TERM -k "$grace" "$limit" python3 check.py 2>&1 1>&3 3>&-
    echo $? > "$d/.status"; } | tail -c 4000 >&2; } 3>&1 | head -c "$cap"
status=$(cat "$d/.status" 2>/dev/null || echo 255)
cd / && rm -rf "$d"
echo "kernellab-checker-status=$status" >&2
"""

# Collect the declared artifacts (paths relative to /) as a tar.gz on stdout.
ARTIFACT_COLLECTOR = r"""
set -u
cd / && tar -czf - --ignore-failed-read "$@" 2>/dev/null | head -c "$KERNELLAB_CAP"
"""

# Unpack artifacts into a staging directory, then move only the declared paths
# into place: whatever else the student's tar holds stays in staging.
ARTIFACT_INSTALLER = r"""
set -eu
staging=/run/kernellab-artifacts
rm -rf "$staging" && mkdir -m 0700 "$staging"
tar -xzf - -C "$staging" --no-same-owner
for path in "$@"; do
  if [ -e "$staging/$path" ] || [ -L "$staging/$path" ]; then
    rm -rf "/$path"
    mkdir -p "$(dirname "/$path")"
    cp -a "$staging/$path" "/$path"
  fi
done
rm -rf "$staging"
"""

STARTER_INSTALLER = r"""
set -eu
tar -xzf - -C /root --no-same-owner
"""


@dataclass
class Outcome:
    status: AttemptStatus
    report: Report | None = None
    reason: str = ""
    kernel_lines: list[str] = field(default_factory=list)
    console_tail: str = ""


# -- bundles -------------------------------------------------------------------------


def _retar(bundle: bytes, mapping: dict[str, str]) -> bytes:
    """A tar.gz of the bundle's members under the prefixes in ``mapping``
    (old prefix -> new prefix, "" for the top), everything else left out."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            for old, new in mapping.items():
                if member.name == old.rstrip("/") or member.name.startswith(old):
                    rest = member.name[len(old) :].lstrip("/")
                    name = f"{new}{rest}".rstrip("/")
                    if not name:
                        break
                    member.name = name
                    data = source.extractfile(member) if member.isfile() else None
                    target.addfile(member, data)
                    break
    return out.getvalue()


def checker_payload(version: ExerciseVersion, *, submit: bool) -> bytes:
    """What goes into the guest for one run: check/ at the top, hidden/ next to
    check.py only for Submit (hidden tests never reach a student's guest)."""
    mapping = {"check/": ""}
    if submit:
        mapping["hidden/"] = "hidden/"
    return _retar(bytes(version.bundle), mapping)


def starter_payload(version: ExerciseVersion) -> bytes:
    return _retar(bytes(version.bundle), {"starter/": ""})


def place_starter(agent: GuestAgent, version: ExerciseVersion) -> None:
    """Copy the exercise's starter files into the guest's /root (lab start)."""
    payload = starter_payload(version)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        if not tar.getmembers():
            return
    result = agent.exec(
        ["sh", "-c", STARTER_INSTALLER, "starter"], stdin=payload, timeout=60, env=[GUEST_PATH]
    )
    if result.exit_code != 0:
        raise HypervisorError(f"placing starter files failed: {result.stderr[-500:]!r}")


# -- console log ---------------------------------------------------------------------


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_since(path: Path, offset: int, limit: int = 1 << 20) -> str:
    """What the guest printed on its kernel console since ``offset`` (the
    file may have been rotated meanwhile: then from its start)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = offset if offset <= size else 0
            start = max(start, size - limit)
            handle.seek(start)
            return handle.read(limit).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


# -- one checker run -----------------------------------------------------------------


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
    directory = f"/run/kernellab-check-{nonce}"
    env = [
        GUEST_PATH,
        "HOME=/root",
        "LANG=C.UTF-8",
        f"KERNELLAB_NONCE={nonce}",
        f"KERNELLAB_MODE={'submit' if mode == 'submit' else 'self'}",
        "KERNELLAB_HOME=/root",
    ]
    argv = [
        "sh",
        "-c",
        GUEST_RUNNER,
        "kernellab-runner",
        directory,
        str(grading.output_limit_bytes + 1),
        str(limit),
        str(TERM_GRACE_SECONDS),
    ]
    try:
        result = agent.exec(
            argv,
            stdin=payload,
            env=env,
            timeout=limit + TERM_GRACE_SECONDS + AGENT_MARGIN_SECONDS,
            output_cap=grading.output_limit_bytes + 1,
        )
    except AgentProtocolError as exc:
        return Outcome(AttemptStatus.CHECKER_ERROR, reason=f"The guest agent misbehaved: {exc}")
    except (AgentUnavailable, AgentTimeout) as exc:
        return _guest_trouble(agent, kernel_log, log_offset, str(exc))
    console = log_since(kernel_log, log_offset)
    kernel_lines = scan_kernel_log(console)
    status = _checker_status(result)
    if status in (124, 137):
        return Outcome(
            AttemptStatus.CHECKER_ERROR,
            reason=f"The checker did not finish within {limit} s and was stopped.",
            kernel_lines=kernel_lines,
        )
    try:
        report = parse_report(result.stdout, nonce=nonce, manifest=manifest, mode=mode)
    except ReportError as exc:
        detail = _stderr_tail(result)
        return Outcome(
            AttemptStatus.CHECKER_ERROR,
            reason=f"The checker's report was not usable: {exc.reason}"
            + (f"\n\nChecker diagnostics:\n{detail}" if detail else ""),
            kernel_lines=kernel_lines,
        )
    for warning in report.warnings:
        log.warning("checker report: %s", warning)
    return Outcome(AttemptStatus.GRADED, report=report, kernel_lines=kernel_lines)


def _checker_status(result: ExecResult) -> int | None:
    for line in reversed(result.stderr.decode("utf-8", errors="replace").splitlines()):
        if line.startswith("kernellab-checker-status="):
            try:
                return int(line.split("=", 1)[1])
            except ValueError:
                return None
    return None


def _stderr_tail(result: ExecResult) -> str:
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


# -- Check and Submit ----------------------------------------------------------------


def _student_guest(vm: LabVM) -> GuestAgent:
    return GuestAgent(lifecycle.hypervisor(vm.host.uri).lookup(vm.domain_name))


def _self_check(attempt: Attempt) -> Outcome:
    vm = attempt.vm
    if vm is None or vm.state != VMState.RUNNING:
        return Outcome(AttemptStatus.ERROR, reason="Your VM is not running any more.")
    manifest = attempt.version.parsed_manifest
    kernel_log = lifecycle.vm_files(vm).kernel_log
    return run_checker(
        _student_guest(vm),
        checker_payload(attempt.version, submit=False),
        nonce=attempt.nonce,
        mode="check",
        manifest=manifest,
        kernel_log=kernel_log,
        log_offset=log_size(kernel_log),
    )


def collect_artifacts(agent: GuestAgent, manifest: ExerciseManifest) -> bytes:
    """The declared paths from the student's guest, as a tar.gz (capped)."""
    paths = [path.lstrip("/") for path in manifest.grading.artifacts]
    result = agent.exec(
        ["sh", "-c", ARTIFACT_COLLECTOR, "collect", *paths],
        env=[GUEST_PATH, f"KERNELLAB_CAP={ARTIFACTS_MAX_BYTES + 1}"],
        timeout=120,
        output_cap=ARTIFACTS_MAX_BYTES + 1,
    )
    if len(result.stdout) > ARTIFACTS_MAX_BYTES or result.truncated:
        raise ArtifactsTooLarge(
            f"The files to grade ({', '.join(manifest.grading.artifacts)}) are larger "
            f"than {ARTIFACTS_MAX_BYTES >> 20} MiB."
        )
    return result.stdout


class ArtifactsTooLarge(Exception):
    pass


def install_artifacts(agent: GuestAgent, manifest: ExerciseManifest, artifacts: bytes) -> None:
    if not artifacts:
        return
    paths = [path.lstrip("/") for path in manifest.grading.artifacts]
    result = agent.exec(
        ["sh", "-c", ARTIFACT_INSTALLER, "install", *paths],
        stdin=artifacts,
        env=[GUEST_PATH],
        timeout=120,
    )
    if result.exit_code != 0:
        raise HypervisorError(f"copying the artifacts in failed: {result.stderr[-500:]!r}")


def reboot(agent: GuestAgent, timeout: float) -> None:
    """Reboot the guest and wait for its agent to answer from the new boot."""
    before = agent.exec(["cat", "/proc/sys/kernel/random/boot_id"], timeout=10).stdout
    with contextlib.suppress(HypervisorError):  # the agent may go down before it answers
        agent.exec(["systemctl", "reboot"], timeout=20)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            if not agent.ping():
                continue
            now = agent.exec(["cat", "/proc/sys/kernel/random/boot_id"], timeout=10).stdout
        except HypervisorError:
            continue
        if now and now != before:
            agent.set_time()
            return
    raise HypervisorError(f"the grading guest did not come back from a reboot in {timeout:.0f}s")


def _submit(attempt: Attempt) -> Outcome:
    vm = attempt.vm
    if vm is None or vm.state != VMState.RUNNING:
        return Outcome(
            AttemptStatus.ERROR,
            reason="Your VM is not running: start it again to submit the work in it.",
        )
    version = attempt.version
    manifest = version.parsed_manifest
    try:
        artifacts = collect_artifacts(_student_guest(vm), manifest)
    except ArtifactsTooLarge as exc:
        return Outcome(AttemptStatus.ERROR, reason=str(exc))
    with grading_guest(
        attempt_id=attempt.id,
        host=vm.host,
        recipe=manifest.vm.recipe,
        memory_mib=manifest.vm.memory_mib,
        vcpus=manifest.vm.vcpus,
    ) as clean:
        install_artifacts(clean.agent, manifest, artifacts)
        offset = log_size(clean.kernel_log)
        if manifest.grading.reboot_before_submit:
            reboot(clean.agent, timeout=180)
        return run_checker(
            clean.agent,
            checker_payload(version, submit=True),
            nonce=attempt.nonce,
            mode="submit",
            manifest=manifest,
            kernel_log=clean.kernel_log,
            log_offset=offset,
        )


def grade(attempt_id: int) -> None:
    """The grading task's body: QUEUED -> RUNNING -> a finished status."""
    if not attempt_transition(attempt_id, AttemptStatus.QUEUED, AttemptStatus.RUNNING):
        return  # already taken by another delivery of this task, or reaped
    attempt = Attempt.objects.select_related("version", "vm", "vm__host", "exercise").get(
        pk=attempt_id
    )
    if attempt.vm_id is not None:  # grading is activity: the idle reaper waits
        LabVM.objects.filter(pk=attempt.vm_id).update(last_activity_at=timezone.now())
    try:
        run = _submit if attempt.kind == AttemptKind.SUBMIT else _self_check
        outcome = run(attempt)
    except HypervisorError as exc:
        log.warning("grading attempt %s: %s", attempt_id, exc)
        outcome = Outcome(
            AttemptStatus.ERROR,
            reason=f"Grading could not run ({exc}). Please try again.",
        )
    except Exception:
        log.exception("grading attempt %s failed", attempt_id)
        outcome = Outcome(AttemptStatus.ERROR, reason="Grading failed on our side.")
    record(attempt, outcome)


def record(attempt: Attempt, outcome: Outcome) -> None:
    report = outcome.report
    with transaction.atomic():
        moved = attempt_transition(
            attempt.id,
            AttemptStatus.RUNNING,
            outcome.status,
            score=report.score if report else 0,
            reason=outcome.reason,
            kernel_log="\n".join(outcome.kernel_lines),
            console_tail=outcome.console_tail,
        )
        if moved and report is not None:
            CheckResult.objects.bulk_create(
                CheckResult(
                    attempt=attempt,
                    position=position,
                    check_id=check.check_id,
                    title=check.title,
                    passed=check.passed,
                    points=check.points_awarded,
                    max_points=check.max_points,
                    message=check.message,
                    hidden=check.hidden,
                )
                for position, check in enumerate(report.checks)
            )
