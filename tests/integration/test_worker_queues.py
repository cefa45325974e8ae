"""Each host's lab lifecycle, grading and housekeeping have their own queue and
worker slots (vms.queues), so no kind of work starves another: a Start is
provisioned, and the reaper runs, while every grading slot is taken by long
gradings and more wait behind them. Real Redis, real workers started as
production starts them (manage.py run_worker's command line)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import LazySettings
from django.utils import timezone

from tests.conftest import World
from tests.support.celery_tasks import hold
from tests.support.processes import Process, host_workers
from vms import lifecycle, services, tasks
from vms.models import Host, LabVM, VMState
from vms.queues import Work, worker_slots

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

HOLD_SECONDS = 600.0  # far longer than the test: only "release" ends them


class Holds:
    """Long tasks filling a queue's slots, with more queued behind them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()

    def fill(self, queue: str, slots: int, extra: int = 2) -> None:
        for number in range(slots + extra):
            hold.apply_async((str(self.folder), number, HOLD_SECONDS), queue=queue)
        deadline = time.monotonic() + 60
        while self.started() < slots:
            assert time.monotonic() < deadline, f"only {self.started()} of {slots} slots taken"
            time.sleep(0.05)

    def started(self) -> int:
        return len(list(self.folder.glob("started-*")))

    def finished(self) -> int:
        return len(list(self.folder.glob("finished-*")))

    def release(self) -> None:
        (self.folder / "release").touch()


def wait_for_state(vm: LabVM, state: VMState, timeout: float, worker: Process) -> float:
    started = time.monotonic()
    while LabVM.objects.get(pk=vm.pk).state != state:
        current = LabVM.objects.get(pk=vm.pk)
        assert current.state != VMState.FAILED, current.error_message
        assert time.monotonic() - started < timeout, (
            f"still {current.state} ({current.progress}) after {timeout}s:\n{worker.output()}"
        )
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def host_name() -> str:
    """A host of this test's own: no other worker on this machine takes its tasks."""
    name = f"queues-{uuid.uuid4().hex[:8]}"
    Host.objects.update(enabled=False)
    return name


@pytest.fixture
def holds(tmp_path: Path) -> Iterator[Holds]:
    holds = Holds(tmp_path / "holds")
    yield holds
    holds.release()


@pytest.mark.libvirt
def test_a_start_is_provisioned_while_every_grading_slot_is_taken(
    world: World, host_name: str, vm_dir: Path, holds: Holds, tmp_path: Path
) -> None:
    host = Host.objects.create(name=host_name, uri="qemu:///system", max_vms=4)
    env = {
        "VM_DIR": str(vm_dir),
        "VIRT_TYPE": "qemu",
        "VM_POOL_SIZE": "0",
        "KERNELLAB_HOST_NAME": host_name,
    }
    with host_workers(tmp_path, host_name, include="tests.support.celery_tasks", **env) as workers:
        holds.fill(host.queue_for(Work.GRADING), worker_slots(Work.GRADING))
        vm = services.lab_start(user=world.alice, assignment=world.hello)
        try:
            seconds = wait_for_state(vm, VMState.RUNNING, 180, workers[Work.LAB])
            # The gradings still hold every slot, and the queued ones still wait.
            assert holds.finished() == 0
            assert holds.started() == worker_slots(Work.GRADING)
            print(f"Start to RUNNING with the grading slots full: {seconds:.1f}s")
        finally:
            holds.release()
            vm = LabVM.objects.get(pk=vm.pk)
            if vm.state != VMState.DESTROYED:
                services.lab_destroy(vm=vm)
                wait_for_state(vm, VMState.DESTROYED, 60, workers[Work.LAB])
    assert not lifecycle.vm_files(vm).directory.exists()


def test_the_reaper_runs_while_grading_and_lab_slots_are_taken(
    world: World, host_name: str, holds: Holds, tmp_path: Path, settings: LazySettings
) -> None:
    # libvirt's test driver: the reconcile sees no guest of ours, and no
    # other test's guest on this machine.
    host = Host.objects.create(name=host_name, uri="test:///default")
    expired = LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=host,
        state=VMState.STOPPED,
        expires_at=timezone.now(),
    )
    env = {"VM_DIR": str(tmp_path / "vms"), "KERNELLAB_HOST_NAME": host_name}
    with host_workers(tmp_path, host_name, include="tests.support.celery_tasks", **env) as workers:
        holds.fill(host.queue_for(Work.GRADING), worker_slots(Work.GRADING))
        lab_holds = Holds(tmp_path / "lab-holds")
        try:
            lab_holds.fill(host.queue_for(Work.LAB), worker_slots(Work.LAB))
            # What beat runs every minute: one reap per enabled host, on its
            # housekeeping queue.
            assert settings.CELERY_BEAT_SCHEDULE["reap-vms"]["task"] == tasks.reap_all.name
            tasks.reap_all()
            seconds = wait_for_state(expired, VMState.DESTROYED, 30, workers[Work.HOUSEKEEPING])
            assert holds.finished() == 0
            assert lab_holds.finished() == 0
            print(f"reaped {seconds:.1f}s after beat's tick with lab and grading full")
        finally:
            lab_holds.release()
