"""The fault-and-abuse suite's restarts: parts of the platform killed or
restarted under real work, each with its defined outcome (nothing lost: no
attempt vanishes, no guest or overlay is orphaned, no state stays stuck) and
the time it took to get there, printed for the notes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from asgiref.sync import sync_to_async

from exercises.folder import BundleEntry, content_hash, make_bundle
from exercises.grading.engine import grade
from exercises.grading.runner import longest_grading_seconds
from exercises.manifest import ExerciseManifest
from exercises.models import Attempt, AttemptKind, AttemptStatus, ExerciseVersion
from exercises.services import attempt_start, attempt_submit_files
from labplatform.celery import app
from tests.conftest import World
from tests.integration.conftest import host_env
from tests.integration.test_console_abuse import destroy, echo_latencies, run
from tests.integration.test_vm_lifecycle import agent_of, sh, started
from tests.support.api import tar_gz
from tests.support.celery_tasks import hold
from tests.support.console_client import ConsoleClient
from tests.support.processes import (
    Process,
    asgi_server_process,
    free_port,
    port_open,
    work_workers,
)
from vms import lifecycle, reaper, sandbox, services
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.errors import AgentProtocolError, AgentUnavailable, HypervisorError
from vms.hypervisor.guest import GuestState
from vms.hypervisor.host import Host as HypervisorHost
from vms.models import Host, LabVM, VMState
from vms.queues import Work

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# A checker that takes a few seconds, as a real one does, then passes.
SLOW_PASSING_CHECKER = """\
import json, time
nonce = open(".kernellab-nonce").read().strip()
time.sleep(5)
print(json.dumps({"nonce": nonce, "checks": [
    {"id": "works", "title": "Check works", "passed": True, "points": 10, "message": "ok"}]}))
"""


def version_with_checker(world: World, source: str, *, limit_seconds: int = 60) -> ExerciseVersion:
    """world.hello's exercise, graded by this checker source with this time limit."""
    exercise = world.hello.exercise
    manifest = ExerciseManifest.model_validate(
        {
            "title": exercise.title,
            "topic": exercise.topic,
            "difficulty": exercise.difficulty,
            "summary": exercise.summary,
            "time_limit_minutes": 60,
            "vm": {"recipe": "kernel-lab", "memory_mib": 1024, "vcpus": 1},
            "grading": {"checker_timeout_seconds": limit_seconds, "artifacts": ["/root/work"]},
            "deadline": {"due_days": 7, "late_days": 2},
            "checks": [{"id": "works", "title": "Check works", "points": 10}],
        }
    )
    payload = [BundleEntry("check/check.py", source.encode())]
    version = ExerciseVersion.objects.create(
        exercise=exercise,
        content_hash=content_hash(payload),
        manifest=manifest.model_dump(mode="json"),
        instructions_md=f"# {exercise.title}\n",
        bundle=make_bundle(payload),
    )
    exercise.current_version = version
    exercise.points = manifest.total_points
    exercise.save(update_fields=["current_version", "points"])
    return version


def domains_named(vm_id: str) -> list[str]:
    """Domains whose metadata carries this vm-id (other tests' domains may
    vanish while we look: they are not ours)."""
    found = []
    for guest in lifecycle.hypervisor("qemu:///system").guests():
        try:
            metadata = guest.metadata()
        except HypervisorError:
            continue
        if metadata is not None and metadata.vm_id == vm_id:
            found.append(guest.name)
    return found


def grading_domains(attempt_id: int) -> list[str]:
    return domains_named(f"{sandbox.PREFIX}{attempt_id}")


def check_now(world: World) -> tuple[Attempt, float]:
    """Alice's Check, graded here and now: the attempt as it ended, and the
    seconds its grading took."""
    attempt = attempt_start(user=world.alice, assignment=world.hello, kind=AttemptKind.CHECK)
    began = time.monotonic()
    grade(attempt.id)
    seconds = time.monotonic() - began
    attempt.refresh_from_db()
    return attempt, seconds


def pool_children(worker: Process) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(worker.popen.pid)], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


def wait_for(what: str, ready: Callable[[], object], timeout: float, worker: Process) -> float:
    started = time.monotonic()
    while not ready():
        assert time.monotonic() - started < timeout, (
            f"{what}: not within {timeout}s\n{worker.output()}"
        )
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_submit_whose_grading_process_is_killed_is_graded_again(
    world: World, own_host: Host, vm_dir: Path, tmp_path: Path
) -> None:
    """The grading worker's pool process is SIGKILLed (the OOM killer's way)
    while a Submit boots its clean guest. Defined outcome: the task comes back
    (late ack, reject on worker lost) and the attempt is graded by the new
    delivery; the killed run's grading guest and folder are gone."""
    version_with_checker(world, SLOW_PASSING_CHECKER)
    env = host_env(own_host, vm_dir)
    with work_workers(tmp_path, own_host.name, (Work.GRADING,), env=env) as workers:
        worker = workers[Work.GRADING]
        attempt = attempt_submit_files(
            user=world.alice,
            assignment=world.hello,
            raw_archive=tar_gz({"root/work/notes.txt": b"my answer\n"}),
        )
        wait_for("the clean guest", lambda: grading_domains(attempt.id), 120, worker)
        killed = grading_domains(attempt.id)
        for pid in pool_children(worker):
            os.kill(pid, signal.SIGKILL)

        def finished() -> bool:
            status = Attempt.objects.get(pk=attempt.pk).status
            return status not in (AttemptStatus.QUEUED, AttemptStatus.RUNNING)

        recovered = wait_for("the attempt to be graded again", finished, 240, worker)
        attempt.refresh_from_db()
        print(f"Submit graded {recovered:.1f}s after its grading process was killed")
        assert attempt.status == AttemptStatus.GRADED, attempt.reason
        assert attempt.score == 10
        assert "WorkerLostError" in worker.full_output()
    assert not grading_domains(attempt.id), "a grading guest outlived its grading"
    assert not set(killed) & set(grading_domains(attempt.id))
    assert not (vm_dir / "grading" / str(attempt.id)).exists()
    print(json.dumps({"killed_guest": killed}))


def drop_my_libvirt_connections() -> int:
    """libvirtd closes every connection of this process, as a restarting
    daemon does (virt-admin), without stopping the daemon that other tests'
    guests and workers share. Returns how many it closed."""
    listing = subprocess.run(
        ["virt-admin", "srv-clients-list", "libvirtd"], capture_output=True, text=True, check=True
    )
    dropped = 0
    for line in listing.stdout.splitlines()[2:]:
        client = line.split()[0] if line.split() else ""
        if not client.isdigit():
            continue
        info = subprocess.run(
            ["virt-admin", "client-info", "libvirtd", client],
            capture_output=True,
            text=True,
            check=False,
        )
        if f"unix_process_id: {os.getpid()}" in info.stdout.replace(" :", ":"):
            subprocess.run(["virt-admin", "client-disconnect", "libvirtd", client], check=True)
            dropped += 1
    return dropped


def test_libvirtd_going_away_during_a_reconcile_leaves_running_vms_alone(
    world: World, vm_dir: Path, no_enqueue: object
) -> None:
    """libvirtd drops the reaper's connection between its listing of the
    domains and its reading of them. Defined outcome: the pass marks no VM
    missing and destroys nothing; the next pass reconnects and sees the VM."""
    vm = started(world)
    host = Host.objects.get(name="local")
    listing = HypervisorHost.guests

    def listed_then_dropped(hv: HypervisorHost) -> Iterator[object]:
        guests = list(listing(hv))
        assert drop_my_libvirt_connections() >= 1
        return iter(guests)

    try:
        with mock.patch.object(HypervisorHost, "guests", listed_then_dropped):
            reaper.reconcile(host)
        vm.refresh_from_db()
        assert vm.state == VMState.RUNNING, (vm.error_code, vm.error_message)
        dropped_at = time.monotonic()
        reaper.reconcile(host)  # the next pass, on a new connection
        recovered = time.monotonic() - dropped_at
        vm.refresh_from_db()
        assert vm.state == VMState.RUNNING, (vm.error_code, vm.error_message)
        guest = lifecycle.hypervisor(host.uri).lookup(vm.domain_name)
        assert guest.state() == GuestState.RUNNING
        assert sh(vm, "echo alive").strip() == "alive"
        print(f"reconcile after libvirtd dropped the connection: {recovered:.2f}s")
    finally:
        vm = LabVM.objects.get(pk=vm.pk)
        if vm.state != VMState.DESTROYED:
            services.lab_destroy(vm=vm)
            lifecycle.destroy(str(vm.id))


async def test_a_console_reconnects_to_the_same_guest_after_the_web_process_restarts(
    world: World, vm_dir: Path, tmp_path: Path, no_enqueue: object
) -> None:
    """The web process serving an open console is stopped and a new one
    started. Defined outcome: the client's socket closes, a new ticket opens
    the console again, and the guest lost nothing: a line half typed before
    the restart is finished after it."""
    vm = await sync_to_async(started)(world)
    env = {"VM_DIR": str(vm_dir), "CONSOLE_RECORDING_DIR": str(tmp_path / "rec")}
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    try:
        with asgi_server_process(tmp_path / "first", **env) as (url, server):
            term = await ConsoleClient.open(url, vm, world.alice)
            mark = len(term.output)
            await term.type("echo ready-$((1+1))\r")
            await term.wait_for(b"ready-2", after=mark)
            await term.type("echo kept-")  # half a line, in the guest's tty
            await term.wait_for(b"kept-", after=mark + len("echo ready-$((1+1))"))
            restarted_at = time.monotonic()
            server.stop()
            code = await term.wait_closed()
        with asgi_server_process(tmp_path / "second", **env) as (url, _server):
            again = await ConsoleClient.open(url, vm, world.alice)
            await again.type("$((3+4))\r")
            await again.wait_for(b"kept-7")
            recovered = time.monotonic() - restarted_at
            await again.close()
        print(f"web restart: closed with {code}, typing again after {recovered:.1f}s")
    finally:
        await destroy(vm)


class OwnRedis:
    """A redis-server of this test's own, configured as ./kernellab services
    runs the shared one (append-only file on), restartable at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: Process | None = None
        self.start()

    def start(self) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--dir", str(self.folder), "--appendonly", "yes", "--save", ""]
        self.server = Process("redis", argv, dict(os.environ), self.folder / "redis.log")
        self.server.wait_until(lambda: port_open(self.port), 30, "listening")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as a restart by the service manager does."""
        assert self.server is not None
        self.server.stop()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    redis = OwnRedis(tmp_path / "redis")
    yield redis
    redis.stop()


def queue_hold(redis: OwnRedis, queue: str, folder: Path, number: int) -> None:
    """tests.hold (done at once) on a queue of this test's Redis."""
    with app.connection_for_write(redis.url) as connection:
        # Declared as a worker or the site's own producer would: a fresh
        # Redis knows no binding, and kombu drops what nothing is bound to.
        app.amqp.queues[queue].bind(connection.default_channel).declare()
        # send_task: the test's no_enqueue stubs Task.apply_async.
        app.send_task(hold.name, (str(folder), number, 0.0), queue=queue, connection=connection)


async def test_a_redis_restart_keeps_consoles_and_queued_tasks(
    world: World,
    own_host: Host,
    own_redis: OwnRedis,
    vm_dir: Path,
    tmp_path: Path,
    no_enqueue: object,
) -> None:
    """Redis (broker, channel layer and cache of a web process and a worker)
    restarts while a console is open and a task waits in a queue. Defined
    outcome: the console's bytes never travel through Redis, so typing goes
    on (or, if the socket closed, a new ticket opens it again at once); the
    task queued before the restart runs after it (append-only file), and
    the worker, reconnected, takes tasks queued after it."""
    vm = await sync_to_async(started)(world)
    markers = tmp_path / "markers"
    markers.mkdir()
    queue = own_host.queue_for(Work.GRADING)
    env = {
        "VM_DIR": str(vm_dir),
        "CONSOLE_RECORDING_DIR": str(tmp_path / "rec"),
        "REDIS_URL": own_redis.url,
        "CACHE_URL": own_redis.url,
        "KERNELLAB_HOST_NAME": own_host.name,
    }
    (tmp_path / "web").mkdir()
    try:
        with asgi_server_process(tmp_path / "web", **env) as (url, server):
            term = await ConsoleClient.open(url, vm, world.alice)
            mark = len(term.output)
            await term.type("echo before-$((1+1))\r")
            await term.wait_for(b"before-2", after=mark)
            await asyncio.to_thread(queue_hold, own_redis, queue, markers, 1)
            restarted_at = time.monotonic()
            await asyncio.to_thread(own_redis.stop)
            mark = len(term.output)
            await term.type("echo while-away-$((1+2))\r")  # Redis is down
            await term.wait_for(b"while-away-3", after=mark, timeout=15)
            await asyncio.sleep(2)  # the layer's receive meets Redis gone, and retries
            await asyncio.to_thread(own_redis.start)
            redis_back = time.monotonic() - restarted_at
            mark = len(term.output)
            await term.type("echo after-$((2+2))\r")
            try:
                await term.wait_for(b"after-4", after=mark, timeout=15)
                console_kept = True
            except AssertionError:
                console_kept = False
                term = await ConsoleClient.open(url, vm, world.alice)
                mark = len(term.output)
                await term.type("echo after-$((2+2))\r")
                await term.wait_for(b"after-4", after=mark)
            console_back = time.monotonic() - restarted_at
            await term.close()
            web_log = server.full_output()
        with work_workers(
            tmp_path, own_host.name, (Work.GRADING,), include="tests.support.celery_tasks", env=env
        ) as workers:
            worker = workers[Work.GRADING]
            wait_for(
                "the task queued before the restart", (markers / "finished-1").exists, 30, worker
            )
            # The worker itself through a restart: it reconnects and takes new work.
            await asyncio.to_thread(own_redis.restart)
            again_at = time.monotonic()
            await asyncio.to_thread(queue_hold, own_redis, queue, markers, 2)
            await asyncio.to_thread(
                wait_for,
                "a task queued after the restart",
                (markers / "finished-2").exists,
                60,
                worker,
            )
            worker_back = time.monotonic() - again_at
        print(
            f"redis restart: down for {redis_back:.1f}s; console "
            f"{'kept' if console_kept else 'reopened'} after {console_back:.1f}s; "
            f"a running worker took new work {worker_back:.1f}s after the restart"
        )
        assert console_kept, f"the console's socket closed when Redis restarted:\n{web_log}"
    finally:
        await destroy(vm)


# Takes the agent's port and answers every request with garbage: what a
# student who is root in the guest can put there.
FAKE_AGENT = """
import os, subprocess, time
subprocess.run(["/usr/bin/systemctl", "stop", "qemu-guest-agent"], check=False)
fd = os.open("/dev/virtio-ports/org.qemu.guest_agent.0", os.O_RDWR)
while True:
    if not os.read(fd, 65536):
        time.sleep(0.05)
        continue
    os.write(fd, b'\\xff{"return": garbage\\n}}} not json\\n' + os.urandom(64) + b'\\n')
"""


def test_a_guest_agent_answering_garbage_gives_a_clear_error_in_time(
    world: World, vm_dir: Path, no_enqueue: object
) -> None:
    """The student replaces qemu-ga with a program answering garbage. Defined
    outcome: agent calls fail with a clear error within their timeout, and a
    Check ends as an error saying why, well within its time limit."""
    version_with_checker(world, SLOW_PASSING_CHECKER)
    vm = started(world)
    try:
        agent = agent_of(vm)
        agent.command(
            "guest-exec",
            {
                "path": "/usr/bin/systemd-run",
                "arg": ["--unit=fake-agent", "/usr/bin/python3", "-c", FAKE_AGENT],
            },
        )
        deadline = time.monotonic() + 30
        while agent.ping():
            assert time.monotonic() < deadline, "the fake agent never took over"
            time.sleep(0.5)
        began = time.monotonic()
        with pytest.raises((AgentUnavailable, AgentProtocolError)) as failed:
            GuestAgent(agent.guest).exec(["uname"], timeout=10)
        call_seconds = time.monotonic() - began
        assert call_seconds < 10 + 5 + 5, "an agent call outlived its timeout"

        attempt, check_seconds = check_now(world)
        print(
            f"garbage agent: call failed in {call_seconds:.1f}s ({failed.value}); "
            f"Check -> {attempt.status} in {check_seconds:.1f}s: {attempt.reason[:200]!r}"
        )
        # The student's guest, not the platform, is at fault, and the page says so.
        assert attempt.status in (AttemptStatus.TIMED_OUT, AttemptStatus.CHECKER_ERROR)
        assert "guest" in attempt.reason
        assert check_seconds < 60 + 30, "the Check outlived its checker's time limit"
    finally:
        vm = LabVM.objects.get(pk=vm.pk)
        services.lab_destroy(vm=vm)
        lifecycle.destroy(str(vm.id))


FORK_BOMB = "bomb() { bomb | bomb & }; bomb"


async def test_a_fork_bomb_stays_in_its_guest(
    world: World, vm_dir: Path, tmp_path: Path, no_enqueue: object
) -> None:
    """alice fork-bombs her guest (in a unit of its own, as her shell is).
    Defined outcome: the guest stays within its limits (its kernel and agent
    survive), a Check there ends graded or with a clear reason within its time
    limit, and bob's console on another VM keeps echoing."""
    version = await sync_to_async(version_with_checker)(
        world, SLOW_PASSING_CHECKER, limit_seconds=10
    )
    bombed = await sync_to_async(started)(world)
    other_vm = await sync_to_async(started)(world, "bob")
    env = {"VM_DIR": str(vm_dir), "CONSOLE_RECORDING_DIR": str(tmp_path / "rec")}
    try:
        with asgi_server_process(tmp_path, **env) as (url, _server):
            other = await ConsoleClient.open(url, other_vm, world.bob)
            await run(other, "echo other-$((1+2))", b"other-3")
            before = await echo_latencies(other, 10)
            agent = await sync_to_async(agent_of)(bombed)
            await asyncio.to_thread(
                agent.command,
                "guest-exec",
                {
                    "path": "/usr/bin/systemd-run",
                    "arg": ["--unit=bomb", "/bin/bash", "-c", FORK_BOMB],
                },
            )
            await asyncio.sleep(5)  # the bomb fills its unit's task limit
            during = await echo_latencies(other, 20)
            attempt, check_seconds = await sync_to_async(check_now)(world)
            await other.close()
        p50_before, p50_during = statistics.median(before), statistics.median(during)
        print(
            f"fork bomb: bob's echo p50 {p50_before * 1000:.1f} ms before, "
            f"{p50_during * 1000:.1f} ms during (max {max(during) * 1000:.1f} ms); "
            f"Check -> {attempt.status} in {check_seconds:.1f}s {attempt.reason[:160]!r}"
        )
        assert attempt.status in (
            AttemptStatus.GRADED,
            AttemptStatus.TIMED_OUT,
            AttemptStatus.CHECKER_ERROR,
        ), attempt.reason
        longest = longest_grading_seconds(version.parsed_manifest, "check")
        assert check_seconds < longest + 15, "the Check outlived its checker's time limit"
        assert p50_during < 0.5, "another VM's console suffers from the bomb"
    finally:
        await destroy(bombed)
        await destroy(other_vm)
