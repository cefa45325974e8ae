"""Two hypervisor hosts on one machine: the machine's libvirtd, and a second
one in its own mount and network namespaces (``./kernellab host``), each with
its own worker, VM folder and queues, one site (uvicorn) in front. Labs land
on both; a console, a Check and a Submit work on the second, and drained, it
takes no new lab while its running one goes on (one test, reusing its
guests). A host lost (its libvirtd and guests SIGKILLed, its worker gone)
turns its labs FAILED with the reason, has the Submit it was grading graded
again on the survivor, leaves nothing behind on the other, and new labs go
to the survivor; when it comes back, its reaper removes what
it still held."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import LazySettings
from django.db import transaction

from exercises.models import ATTEMPT_FINISHED_STATUSES, Attempt, AttemptKind, AttemptStatus
from exercises.services import attempt_start
from labplatform.accounts.models import User
from labplatform.courses.models import Assignment
from labplatform.courses.services import assignment_set
from tests.conftest import World, client_for
from tests.integration.test_grading import synced_version
from tests.support.console_client import ConsoleClient
from tests.support.processes import Process, asgi_server, host_worker
from tests.support.second_host import SecondHost, second_host
from vms import reaper, services
from vms.hosts import HostCondition, hosts_check_all
from vms.images import BuiltImage
from vms.models import Host, LabVM, VMState

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def machine() -> Iterator[SecondHost]:
    with second_host() as host:
        yield host


@dataclass
class Cluster:
    first: Host  # the machine's own libvirtd
    second: Host  # the namespaced one
    machine: SecondHost
    url: str
    workers: dict[str, Process]
    hello: Assignment  # the catalogue's hello-module, for alice

    def processes(self) -> list[Process]:
        return [w for w in self.workers.values() if w.popen.poll() is None]


def domains(uri: str) -> list[str]:
    listed = subprocess.run(
        ["virsh", "-c", uri, "list", "--all", "--name"], capture_output=True, text=True, check=True
    )
    return [name for name in listed.stdout.split() if name]


def wait_for(what: str, probe: object, timeout: float, cluster: Cluster) -> None:
    assert callable(probe)
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}:\n{p.output()}" for p in cluster.processes())
            raise AssertionError(f"{what}: not within {timeout}s\n{logs}")
        time.sleep(0.5)


def wait_running(vm: LabVM, cluster: Cluster, timeout: float = 300) -> LabVM:
    def running() -> bool:
        vm.refresh_from_db()
        assert vm.state != VMState.FAILED, vm.error_message
        return vm.state == VMState.RUNNING

    wait_for(f"{vm.id} to run", running, timeout, cluster)
    return vm


def wait_graded(attempt: Attempt, cluster: Cluster, timeout: float = 300) -> Attempt:
    def finished() -> bool:
        attempt.refresh_from_db()
        return attempt.status in ATTEMPT_FINISHED_STATUSES

    wait_for(f"attempt {attempt.pk} to be graded", finished, timeout, cluster)
    return attempt


def start(user: User, assignment: Assignment) -> LabVM:
    return services.lab_start(user=user, assignment=assignment, preview=True)


@pytest.fixture
def cluster(
    world: World, machine: SecondHost, lab_image: BuiltImage, vm_dir: Path, tmp_path: Path
) -> Iterator[Cluster]:
    # Hosts of this test's own: no other run's worker takes their tasks.
    Host.objects.update(enabled=False)
    suffix = uuid.uuid4().hex[:6]
    first = Host.objects.create(name=f"h1-{suffix}", uri="qemu:///system", max_vms=8)
    # Bigger, so that the second lab goes there by load, and a drain shows.
    second = Host.objects.create(name=f"h2-{suffix}", uri=machine.uri, max_vms=16)
    # hello-module's real checks: world.hello, with the catalogue's version.
    hello = assignment_set(
        cohort=world.autumn,
        exercise=synced_version("hello-module").exercise,
        opens_at=world.hello.opens_at,
        due_at=world.hello.due_at,
        closes_at=world.hello.closes_at,
    )
    common = {"VIRT_TYPE": "qemu", "VM_POOL_SIZE": "0", "LOG_LEVEL": "INFO"}
    workers: dict[str, Process] = {}
    with ExitStack() as stack:
        workers[first.name] = stack.enter_context(
            host_worker(
                tmp_path,
                first.name,
                VM_DIR=str(vm_dir),
                LIBVIRT_URI=first.uri,
                KERNELLAB_HOST_NAME=first.name,
                **common,
            )
        )
        workers[second.name] = stack.enter_context(
            host_worker(
                tmp_path,
                second.name,
                VM_DIR=str(machine.vm_dir),
                LIBVIRT_URI=second.uri,
                KERNELLAB_HOST_NAME=second.name,
                **common,
            )
        )
        # No lingering console hub: a console opened again starts from the logs.
        url = stack.enter_context(
            asgi_server(tmp_path, VM_DIR=str(vm_dir), CONSOLE_LINGER_SECONDS="0")
        )
        cluster = Cluster(first, second, machine, url, workers, hello)
        try:
            yield cluster
        finally:
            for vm in LabVM.objects.live().exclude(state=VMState.DESTROYING):
                services.lab_destroy(vm=vm)
            wait_for(
                "the labs to be destroyed",
                lambda: not LabVM.objects.live().exists(),
                120,
                cluster,
            )
    assert domains(machine.uri) == [], "the second host kept guests"


async def console_says(url: str, vm: LabVM, user: User, command: bytes, expect: bytes) -> None:
    term = await ConsoleClient.open(url, vm, user)
    try:
        await term.type(command)
        await term.wait_for(expect, timeout=60)
    finally:
        await term.close()


async def scrollback_has(url: str, vm: LabVM, user: User, expect: bytes) -> None:
    term = await ConsoleClient.open(url, vm, user)
    try:
        await term.wait_for(expect, timeout=30)  # nothing typed: the scrollback
    finally:
        await term.close()


def test_labs_land_on_both_hosts_and_the_second_runs_a_console_check_submit_and_drains(
    cluster: Cluster, world: World
) -> None:
    started = time.monotonic()
    alices = start(world.alice, cluster.hello)  # both empty: the one with most room
    bobs = start(world.bob, world.strace)  # the least loaded for its size
    assert (bobs.host, alices.host) == (cluster.first, cluster.second)
    wait_running(bobs, cluster)
    wait_running(alices, cluster)
    print(f"two labs running on two hosts {time.monotonic() - started:.1f}s after the Starts")
    # Each guest is its host's: its domain on that libvirtd, its files in that VM folder.
    assert alices.domain_name in domains(cluster.machine.uri)
    assert alices.domain_name not in domains("qemu:///system")
    assert bobs.domain_name in domains("qemu:///system")
    assert (cluster.machine.vm_dir / str(alices.id)).is_dir()

    # The web process opens the console through the lab's host's URI.
    asyncio.run(
        console_says(cluster.url, alices, world.alice, b"echo $((6*7))-on-h2\n", b"42-on-h2")
    )
    # The logs libvirt writes on the second host reach the web through that
    # host's worker: a console opened again starts with what was said before,
    # and the Kernel log pane has the boot.
    asyncio.run(scrollback_has(cluster.url, alices, world.alice, b"42-on-h2"))
    kernel = client_for(world.alice).get(f"/vms/{alices.pk}/kernel-log?offset=0").json()
    assert "Linux version" in kernel["text"]

    mark = time.monotonic()
    check = attempt_start(user=world.alice, assignment=cluster.hello, kind=AttemptKind.CHECK)
    assert wait_graded(check, cluster).status == AttemptStatus.GRADED, check.reason
    submit = attempt_start(user=world.alice, assignment=cluster.hello, kind=AttemptKind.SUBMIT)
    assert wait_graded(submit, cluster).status == AttemptStatus.GRADED, submit.reason
    print(f"Check and Submit on the second host: {time.monotonic() - mark:.1f}s")
    # Graded by the second host's worker, in a clean guest of its own.
    assert cluster.workers[cluster.second.name].full_output().count("exercises.grade[") >= 2
    assert "exercises.grade[" not in cluster.workers[cluster.first.name].full_output()

    # Drained from the staff page: the second host, the least loaded for its
    # size, takes no new lab; its running lab goes on. Then it takes labs again.
    world.tess.is_staff = True
    world.tess.save(update_fields=["is_staff"])
    staff = client_for(world.tess)
    with transaction.atomic():
        assert services.host_place() == cluster.second
    assert staff.post(f"/staff/hosts/{cluster.second.name}/drain").status_code == 302
    with transaction.atomic():
        assert services.host_place() == cluster.first
    asyncio.run(
        console_says(cluster.url, alices, world.alice, b"echo still-$((1+1))\n", b"still-2")
    )
    assert staff.post(f"/staff/hosts/{cluster.second.name}/undrain").status_code == 302
    with transaction.atomic():
        assert services.host_place() == cluster.second


def test_a_lost_host_fails_its_labs_and_new_labs_go_to_the_survivor(
    cluster: Cluster, world: World, vm_dir: Path, settings: LazySettings
) -> None:
    alices = start(world.alice, cluster.hello)
    bobs = start(world.bob, world.strace)
    assert (bobs.host, alices.host) == (cluster.first, cluster.second)
    wait_running(bobs, cluster)
    wait_running(alices, cluster)
    assert cluster.machine.qemu_pids()
    # Alice submits; the second host starts grading it (its clean guest boots).
    submit = attempt_start(user=world.alice, assignment=cluster.hello, kind=AttemptKind.SUBMIT)
    assert submit.graded_on == cluster.second
    second_worker = cluster.workers[cluster.second.name]
    wait_for(
        "the second host to take the Submit",
        lambda: Attempt.objects.get(pk=submit.pk).status == AttemptStatus.RUNNING,
        60,
        cluster,
    )

    # The second machine is gone: its libvirtd, its guests and its worker.
    second_worker.kill()
    cluster.machine.kill()
    assert cluster.machine.qemu_pids() == []
    settings.HOST_LOST_AFTER_SECONDS = 0  # beat's check would wait 3 minutes
    assert hosts_check_all()[cluster.second.name] == HostCondition.LOST
    # The Submit is not left to the attempt reaper's deadline: it is graded
    # again on the survivor, from the files stored at the click, and counts.
    submit.refresh_from_db()
    assert submit.status == AttemptStatus.ERROR
    assert "stopped answering" in submit.reason
    again = Attempt.objects.get(regrade_of=submit)
    assert (again.graded_on, again.created_at) == (cluster.first, submit.created_at)
    graded = wait_graded(again, cluster)
    assert graded.status == AttemptStatus.GRADED, graded.reason
    assert graded.results.count() > 0  # alice's starter files, really checked

    alices.refresh_from_db()
    assert alices.state == VMState.FAILED
    assert alices.error_code == "host_unreachable"
    assert f"host {cluster.second.name}) is unreachable" in alices.error_message
    bobs.refresh_from_db()
    assert bobs.state == VMState.RUNNING
    # A new lab goes to the survivor, though the lost host is the least loaded.
    with transaction.atomic():
        assert services.host_place() == cluster.first
    # Nothing of the lost host's labs on the survivor.
    assert not (vm_dir / str(alices.id)).exists()
    assert alices.domain_name not in domains("qemu:///system")

    # It comes back: it answers, takes labs again, and its reaper removes the
    # lost lab's leftovers (a domain defined, its folder) that no live row claims.
    cluster.machine.start()
    assert alices.domain_name in domains(cluster.machine.uri)
    assert hosts_check_all()[cluster.second.name] == HostCondition.ANSWERS
    settings.VM_DIR = cluster.machine.vm_dir  # the reaper runs on that host
    reaper.reap_host(cluster.second.name)
    assert domains(cluster.machine.uri) == []
    assert not (cluster.machine.vm_dir / str(alices.id)).exists()
    with transaction.atomic():
        assert services.host_place() == cluster.second
