"""The fault-and-abuse suite: a host's whole worker SIGKILLed, its main
process and every pool process at once (as a host losing power, or the OOM
killer taking the process group, does), while a Start's guest boots or a
Submit's clean guest does. Each test says its defined outcome."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from exercises.grading.runner import longest_grading_seconds
from exercises.models import Attempt, AttemptStatus
from exercises.services import attempt_submit_files, attempts_reap_stuck
from tests.conftest import World
from tests.integration.conftest import host_env
from tests.integration.test_faults import (
    SLOW_PASSING_CHECKER,
    domains_named,
    grading_domains,
    pool_children,
    version_with_checker,
    wait_for,
)
from tests.integration.test_worker_queues import wait_for_state
from tests.support.api import tar_gz
from tests.support.processes import work_workers
from vms import lifecycle, reaper, services
from vms.guests import WAITING_FOR_THE_GUEST
from vms.models import Host, LabVM, VMState
from vms.queues import Work

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

OPEN = (AttemptStatus.QUEUED, AttemptStatus.RUNNING)


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie nobody has reaped yet."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rpartition(")")[2].split()[0] == "Z"


def test_a_whole_worker_killed_mid_provision_fails_the_vm_and_a_new_start_works(
    world: World, own_host: Host, vm_dir: Path, tmp_path: Path
) -> None:
    """Defined outcome (vms.reaper.finish_lost_step): the reaper's next pass
    finds the step's worker gone and, since the guest never came up, fails the
    VM with a reason ("worker_lost"), removing its domain and its folder; a
    new Start for the same student, on a restarted worker, then works."""
    host = own_host
    env = host_env(host, vm_dir)
    (tmp_path / "first").mkdir()
    with work_workers(tmp_path / "first", host.name, (Work.LAB,), env=env) as workers:
        worker = workers[Work.LAB]
        vm = services.lab_start(user=world.alice, assignment=world.hello)

        def booting() -> bool:
            return (LabVM.objects.get(pk=vm.pk).progress or "").startswith(WAITING_FOR_THE_GUEST)

        wait_for("the guest to boot", booting, 120, worker)
        processes = [worker.popen.pid, *pool_children(worker)]
        os.killpg(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait()
        killed_at = time.monotonic()
        wait_for("every worker process to die", lambda: all(map(gone, processes)), 10, worker)
    vm.refresh_from_db()
    assert vm.state == VMState.PROVISIONING
    signer = int(vm.worker.rpartition(":")[2])
    assert signer in processes, (vm.worker, processes)
    folder = lifecycle.vm_files(vm).directory
    assert domains_named(str(vm.id)) == [vm.domain_name]
    assert folder.exists()

    # The reaper's next pass (beat runs it every minute), called here at once:
    # the guest is seconds into its boot, its agent not up, so the step fails.
    reaper.reap_host(host.name)
    vm.refresh_from_db()
    recovered = time.monotonic() - killed_at
    assert vm.state == VMState.FAILED, (vm.state, vm.progress)
    assert vm.error_code == "worker_lost"
    assert "start the lab again" in vm.error_message
    assert domains_named(str(vm.id)) == [], "the killed provision's domain is orphaned"
    assert not folder.exists(), "the killed provision's overlay is orphaned"
    reaper.reap_host(host.name)  # and the pass after leaves it so
    assert LabVM.objects.get(pk=vm.pk).state == VMState.FAILED

    # A new Start for alice, on the host's restarted worker.
    (tmp_path / "second").mkdir()
    with work_workers(tmp_path / "second", host.name, (Work.LAB,), env=env) as workers:
        worker = workers[Work.LAB]
        again = services.lab_start(user=world.alice, assignment=world.hello)
        assert again.pk != vm.pk
        try:
            seconds = wait_for_state(again, VMState.RUNNING, 180, worker)
            print(
                f"\nwhole worker killed mid-provision: FAILED (worker_lost) by the reaper "
                f"{recovered:.1f}s after the kill; a new Start reached RUNNING in {seconds:.1f}s"
            )
            assert domains_named(str(again.id)) == [LabVM.objects.get(pk=again.pk).domain_name]
        finally:
            again = LabVM.objects.get(pk=again.pk)
            if again.state != VMState.DESTROYED:
                services.lab_destroy(vm=again)
                wait_for_state(again, VMState.DESTROYED, 60, worker)
    assert LabVM.objects.get(pk=vm.pk).state == VMState.FAILED  # a redelivery changed nothing
    assert not lifecycle.vm_files(again).directory.exists()
    assert [p.name for p in vm_dir.iterdir() if p.name != "grading"] == []


def test_a_whole_grading_worker_killed_mid_submit_ends_the_attempt_and_its_guest(
    world: World, own_host: Host, vm_dir: Path, tmp_path: Path
) -> None:
    """The host's grading worker, main process and pool together, is SIGKILLed
    while a Submit's clean guest boots. No delivery comes back (the message
    waits out the broker's visibility timeout), so the defined outcome is
    vms.reaper's and exercises.services.attempts_reap_stuck's: once the
    attempt has been open longer than its longest healthy grading plus the
    grace, it becomes ERROR saying to try again (it does not vanish), the
    reaper's next pass removes its clean guest and folder, and the student's
    next Submit is graded."""
    version_with_checker(world, SLOW_PASSING_CHECKER)
    host = own_host
    env = host_env(host, vm_dir)
    files = tar_gz({"root/work/notes.txt": b"my answer\n"})
    (tmp_path / "first").mkdir()
    with work_workers(tmp_path / "first", host.name, (Work.GRADING,), env=env) as workers:
        worker = workers[Work.GRADING]
        attempt = attempt_submit_files(user=world.alice, assignment=world.hello, raw_archive=files)
        wait_for("the clean guest", lambda: grading_domains(attempt.id), 120, worker)
        processes = [worker.popen.pid, *pool_children(worker)]
        os.killpg(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait()
        wait_for("every worker process to die", lambda: all(map(gone, processes)), 10, worker)
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.RUNNING
    killed_guest = grading_domains(attempt.id)
    assert killed_guest

    # The reaper's pass before the attempt is judged lost leaves its guest be...
    reaper.reap_host(host.name)
    assert grading_domains(attempt.id) == killed_guest
    # ...and the one after (beat's clock moved past the attempt's longest grading).
    longest = longest_grading_seconds(attempt.version.parsed_manifest, attempt.mode)
    later = timezone.now() + timedelta(
        seconds=longest + 60 * settings.GRADING_STUCK_GRACE_MINUTES + 1
    )
    assert attempts_reap_stuck(now=later) == [attempt.id]
    reaper.reap_host(host.name)
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.ERROR
    assert "try again" in attempt.reason
    assert grading_domains(attempt.id) == [], "the killed Submit's clean guest is orphaned"
    assert not (vm_dir / "grading" / str(attempt.id)).exists()

    # alice submits again, on the host's restarted grading worker.
    (tmp_path / "second").mkdir()
    with work_workers(tmp_path / "second", host.name, (Work.GRADING,), env=env) as workers:
        again = attempt_submit_files(user=world.alice, assignment=world.hello, raw_archive=files)

        def graded() -> bool:
            return Attempt.objects.get(pk=again.pk).status not in OPEN

        seconds = wait_for("the new Submit to be graded", graded, 180, workers[Work.GRADING])
    again.refresh_from_db()
    print(f"\nwhole grading worker killed: the new Submit was graded in {seconds:.1f}s")
    assert again.status == AttemptStatus.GRADED, again.reason
    assert again.score == 10
    assert grading_domains(again.id) == []
    assert Attempt.objects.get(pk=attempt.pk).status == AttemptStatus.ERROR
