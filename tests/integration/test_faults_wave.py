"""The fault-and-abuse suite: a wave of Submits while another student presses
Start, on a host's workers as production runs them (vms.queues: a lab, a
grading and a housekeeping worker, each with its own slots).

Defined outcome: four students' Submits (each a clean guest and a slow
checker) fill the grading slots and queue behind them; bob's Start is
provisioned meanwhile and answers in his console before the wave drains, the
reaper runs on the housekeeping worker while the gradings still run, and
every Submit is graded in the end, with nothing left behind.

Bob's click-to-prompt and echo latency with and without the wave are
printed for the notes: a figure, not a timed assertion (the two cores of
this machine are shared by every guest booting on it)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from exercises.models import Attempt, AttemptStatus
from exercises.services import attempt_submit_files
from labplatform.courses.models import Role
from labplatform.courses.services import enrolment_set
from tests.conftest import World, make_user
from tests.integration.conftest import host_env
from tests.integration.test_confinement import cpu_weight, qemu_pid
from tests.integration.test_console_abuse import echo_latencies, run
from tests.integration.test_faults import grading_domains, version_with_checker
from tests.support.api import tar_gz
from tests.support.console_client import ConsoleClient
from tests.support.processes import Process, asgi_server_process, host_workers
from vms import reaper, services, tasks
from vms.models import Host, LabVM, VMState
from vms.queues import Work, worker_slots

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

SUBMITS = 4
CHECKER_SECONDS = 10

# Passes after a while, as a real checker that builds and loads a module does.
SLOW_CHECKER = f"""\
import json, time
nonce = open(".kernellab-nonce").read().strip()
time.sleep({CHECKER_SECONDS})
print(json.dumps({{"nonce": nonce, "checks": [
    {{"id": "works", "title": "Check works", "passed": True, "points": 10, "message": "ok"}}]}}))
"""

OPEN = (AttemptStatus.QUEUED, AttemptStatus.RUNNING)


def open_attempts(attempts: list[Attempt]) -> int:
    return Attempt.objects.filter(pk__in=[a.pk for a in attempts], status__in=OPEN).count()


def running_attempts(attempts: list[Attempt]) -> int:
    pks = [a.pk for a in attempts]
    return Attempt.objects.filter(pk__in=pks, status=AttemptStatus.RUNNING).count()


async def wait_until(what: str, ready: Any, timeout: float, worker: Process) -> float:
    """Seconds until the (sync) condition holds, polled off the event loop."""
    began = time.monotonic()
    while not await sync_to_async(ready)():
        assert time.monotonic() - began < timeout, (
            f"{what}: not within {timeout}s\n{worker.output()}"
        )
        await asyncio.sleep(0.1)
    return time.monotonic() - began


def vm_state(vm: LabVM) -> LabVM:
    return LabVM.objects.get(pk=vm.pk)


@dataclass
class StartSeen:
    """bob's Start as he sees it, in seconds from his click."""

    vm: LabVM
    running: float  # the page says Ready
    prompt: float  # his console answers his first command
    boot: float  # the worker's own figure (LabVM.boot_seconds): dispatch left out
    echo: list[float]  # keystroke to echo, then

    def figures(self) -> str:
        return (
            f"RUNNING {self.running:.1f}s (boot {self.boot:.1f}s), prompt {self.prompt:.1f}s, "
            f"echo p50 {statistics.median(self.echo) * 1000:.1f} ms "
            f"(max {max(self.echo) * 1000:.1f} ms)"
        )


async def start_to_prompt(url: str, world: World, workers: dict[Work, Process]) -> StartSeen:
    clicked = time.monotonic()
    vm = await sync_to_async(services.lab_start)(user=world.bob, assignment=world.strace)

    def running() -> bool:
        current = vm_state(vm)
        assert current.state != VMState.FAILED, current.error_message
        return current.state == VMState.RUNNING

    await wait_until("bob's Start", running, 180, workers[Work.LAB])
    to_running = time.monotonic() - clicked
    term = await ConsoleClient.open(url, vm, world.bob)
    await run(term, "echo prompt-$((2+2))", b"prompt-4", timeout=60)
    to_prompt = time.monotonic() - clicked
    latencies = await echo_latencies(term, 10)
    await term.close()
    boot = (await sync_to_async(vm_state)(vm)).boot_seconds or 0.0
    return StartSeen(vm, to_running, to_prompt, boot, latencies)


async def destroyed(vm: LabVM, workers: dict[Work, Process]) -> None:
    current = await sync_to_async(vm_state)(vm)
    if current.state == VMState.DESTROYED:
        return
    await sync_to_async(services.lab_destroy)(vm=current)
    await wait_until(
        "the Destroy", lambda: vm_state(vm).state == VMState.DESTROYED, 60, workers[Work.LAB]
    )


def wave(world: World) -> list[Attempt]:
    """Four students of alice's cohort submit at once."""
    students = [world.alice]
    for name in ("carol", "dave", "erin")[: SUBMITS - 1]:
        student = make_user(name)
        enrolment_set(user=student, cohort=world.autumn, role=Role.STUDENT)
        students.append(student)
    return [
        attempt_submit_files(
            user=student,
            assignment=world.hello,
            raw_archive=tar_gz({"root/work/notes.txt": f"{student.username}\n".encode()}),
        )
        for student in students
    ]


def beat_minute(host: Host) -> None:
    """Beat's minutely entry point (run here, as beat's worker would), with
    this test's host the only one its database knows: the fan-out reaches
    this host's housekeeping queue and no other test's workers."""
    assert settings.CELERY_BEAT_SCHEDULE["reap-vms"] == {
        "task": tasks.reap_all.name,
        "schedule": 60.0,
    }
    Host.objects.exclude(pk=host.pk).delete()
    tasks.reap_all()


def nothing_left(vm_dir: Path, attempts: list[Attempt], host: Host) -> None:
    reaper.reap_host(host.name)
    for attempt in attempts:
        assert not grading_domains(attempt.pk), f"attempt {attempt.pk}'s clean guest is orphaned"
    grading = vm_dir / "grading"
    assert not grading.exists() or list(grading.iterdir()) == []
    assert [p.name for p in vm_dir.iterdir() if p.name != "grading"] == []
    assert not LabVM.objects.filter(host=host).exclude(state=VMState.DESTROYED).exists()


async def test_a_start_reaches_its_prompt_and_the_reaper_runs_during_a_wave_of_submits(
    world: World, vm_dir: Path, tmp_path: Path
) -> None:
    await sync_to_async(version_with_checker)(world, SLOW_CHECKER, limit_seconds=60)
    name = f"wave-{uuid.uuid4().hex[:8]}"
    await sync_to_async(Host.objects.update)(enabled=False)
    host = await sync_to_async(Host.objects.create)(name=name, uri="qemu:///system", max_vms=8)
    env = host_env(host, vm_dir, CONSOLE_RECORDING_DIR=str(tmp_path / "rec"))
    slots = worker_slots(Work.GRADING)
    assert slots + 2 <= SUBMITS, "the wave must fill the grading slots and queue behind them"
    (tmp_path / "web").mkdir()
    attempts: list[Attempt] = []
    with (
        host_workers(tmp_path, name, **env) as workers,
        asgi_server_process(tmp_path / "web", **env) as (url, _server),
    ):
        quiet = await start_to_prompt(url, world, workers)
        await destroyed(quiet.vm, workers)

        attempts = await sync_to_async(wave)(world)
        grader = workers[Work.GRADING]
        await wait_until(
            "the grading slots to fill", lambda: running_attempts(attempts) == slots, 60, grader
        )

        # The clean guests weigh less than a lab guest when cores are short.
        def clean_guests() -> list[str]:
            return [d for a in attempts for d in grading_domains(a.pk)]

        await wait_until("a clean guest to boot", clean_guests, 60, grader)
        grading_weight = cpu_weight(qemu_pid((await sync_to_async(clean_guests)())[0]))
        stray = vm_dir / str(uuid.uuid4())  # an orphan folder: the reaper's to remove
        stray.mkdir()
        # bob presses Start, and beat's minute strikes, while the wave is graded.
        start = asyncio.create_task(start_to_prompt(url, world, workers))
        await sync_to_async(beat_minute)(host)
        reaped = await wait_until(
            "the reaper's pass", lambda: not stray.exists(), 55, workers[Work.HOUSEKEEPING]
        )
        open_at_reap = await sync_to_async(open_attempts)(attempts)
        during = await start
        open_at_prompt = await sync_to_async(open_attempts)(attempts)
        lab_weight = cpu_weight(qemu_pid((await sync_to_async(vm_state)(during.vm)).domain_name))
        await destroyed(during.vm, workers)

        drained = await wait_until(
            "every Submit to be graded", lambda: open_attempts(attempts) == 0, 300, grader
        )
    graded = [await sync_to_async(Attempt.objects.get)(pk=a.pk) for a in attempts]
    print(
        f"\nbob's Start, quiet: {quiet.figures()}; during {SUBMITS} Submits "
        f"({slots} grading slots): {during.figures()}, {open_at_prompt} Submits still open at his "
        f"prompt; the reaper ran {reaped:.1f}s after beat's tick with {open_at_reap} open; "
        f"the wave drained {drained:.1f}s after that"
    )
    # Bob did not wait behind the wave, nor the reaper: the second round of
    # Submits (queued behind the full grading slots) was still open.
    assert open_at_prompt >= SUBMITS - slots, "the Start waited for the gradings"
    assert open_at_reap > 0, "the reaper waited for the gradings"
    # Nor did his guest compete with the wave's on equal terms.
    assert grading_weight * 4 <= lab_weight, (grading_weight, lab_weight)
    # Nothing lost: every Submit graded, nothing left behind.
    assert [(a.status, a.score) for a in graded] == [(AttemptStatus.GRADED, 10)] * SUBMITS, [
        a.reason for a in graded
    ]
    await sync_to_async(nothing_left)(vm_dir, attempts, host)
