"""A guest kernel panic, as the platform records it: which libvirt events
mean a panic, what the student sees, what they can do next. The real panic
of a real guest is tests/integration/test_vm_crash.py."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import libvirt
import pytest
from django.http import HttpRequest
from django.test import Client

from tests.conftest import PASSWORD, World
from vms import lifecycle, services
from vms.crashes import console_tail, vm_crashed
from vms.errors import InvalidState
from vms.events import vm_event_payload
from vms.hypervisor.watch import is_panic_event
from vms.models import Host, LabVM, VMState

E = libvirt


@pytest.mark.parametrize(
    ("event", "detail", "panic"),
    [
        (E.VIR_DOMAIN_EVENT_CRASHED, E.VIR_DOMAIN_EVENT_CRASHED_PANICKED, True),
        (E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_CRASHED, True),
        (E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_DESTROYED, False),
        (E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_SAVED, False),
        (E.VIR_DOMAIN_EVENT_STOPPED, E.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, False),
        (E.VIR_DOMAIN_EVENT_STARTED, E.VIR_DOMAIN_EVENT_STARTED_BOOTED, False),
    ],
)
def test_only_a_crash_is_a_panic(event: int, detail: int, panic: bool) -> None:
    assert is_panic_event(event, detail) is panic


def test_console_tail_is_the_last_lines_as_plain_text(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    lines = [f"\x1b[1;31mline {n}\x1b[0m\r" for n in range(100)]
    log.write_bytes(("\n".join(lines) + "\n\x07Kernel panic - not syncing: sysrq\n").encode())
    tail = console_tail(log, lines=5)
    assert tail.split("\n") == [
        "line 96",
        "line 97",
        "line 98",
        "line 99",
        "Kernel panic - not syncing: sysrq",
    ]
    assert console_tail(tmp_path / "missing.log") == ""


@pytest.fixture
def running(world: World, settings: Any, tmp_path: Path) -> LabVM:
    settings.VM_DIR = tmp_path
    vm = LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=VMState.RUNNING,
        domain_uuid=uuid.uuid4(),
        expires_at=world.hello.closes_at,
    )
    files = lifecycle.vm_files(vm)
    files.directory.mkdir()
    files.kernel_log.write_text(
        "[   21.07] sysrq: Trigger a crash\n"
        "[   21.08] Kernel panic - not syncing: sysrq triggered crash\n"
    )
    return vm


def test_a_panicked_running_lab_becomes_crashed_with_its_last_lines(running: LabVM) -> None:
    with mock.patch("vms.events.publish_vm_event") as publish:
        vm = vm_crashed(domain_uuid=str(running.domain_uuid))
    assert vm is not None
    running.refresh_from_db()
    assert running.state == VMState.CRASHED
    assert running.error_code == "kernel_panic"
    assert "Kernel panic - not syncing" in running.crash_log
    publish.assert_called_once()
    payload = vm_event_payload(running)
    assert payload["state"] == "crashed"
    assert "Kernel panic" in payload["crash_log"]
    # A second event (CRASHED then STOPPED/CRASHED) changes nothing.
    assert vm_crashed(domain_uuid=str(running.domain_uuid)) is None


@pytest.mark.parametrize("state", [VMState.STOPPED, VMState.DESTROYING, VMState.PROVISIONING])
def test_a_panic_of_a_vm_not_running_is_ignored(running: LabVM, state: VMState) -> None:
    LabVM.objects.filter(pk=running.pk).update(state=state)
    assert vm_crashed(domain_uuid=str(running.domain_uuid)) is None
    assert vm_crashed(domain_uuid=str(uuid.uuid4())) is None  # a pool or grading guest
    running.refresh_from_db()
    assert running.state == state


def test_restart_and_reset_are_offered_and_stop_is_not(
    running: LabVM, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    LabVM.objects.filter(pk=running.pk).update(state=VMState.CRASHED, crash_log="panic")
    with mock.patch("celery.app.task.Task.apply_async") as enqueued:
        with pytest.raises(InvalidState):
            services.lab_stop(vm=LabVM.objects.get(pk=running.pk))
        with django_capture_on_commit_callbacks(execute=True):
            again = services.lab_start(user=world.alice, assignment=world.hello)
        assert again.pk == running.pk
        assert again.state == VMState.RESUMING
        assert again.crash_log == ""
        assert enqueued.call_count == 1
        LabVM.objects.filter(pk=running.pk).update(state=VMState.CRASHED)
        reset = services.lab_reset(vm=LabVM.objects.get(pk=running.pk))
        assert reset.state == VMState.RESETTING


def test_the_exercise_page_shows_the_crash_and_its_lines(running: LabVM, world: World) -> None:
    LabVM.objects.filter(pk=running.pk).update(
        state=VMState.CRASHED,
        error_message="The guest's kernel crashed",
        crash_log="<b>Kernel panic</b>",
    )
    client = Client()
    assert client.login(request=HttpRequest(), username="alice", password=PASSWORD)
    html = client.get(f"/exercises/{world.hello.exercise.slug}/").content.decode()
    assert 'data-state="crashed"' in html
    assert "The guest&#x27;s kernel crashed" in html
    assert "&lt;b&gt;Kernel panic&lt;/b&gt;" in html  # escaped, never markup


def test_a_long_crash_report_shows_its_first_lines(tmp_path: Path) -> None:
    """A panic's call trace can be longer than the tail: the tail then starts
    where the report does (what crashed), not in the register dump at its end
    (a CI run showed 40 lines of '? do_syscall_64' and registers, no 'sysrq')."""
    log = tmp_path / "kernel.log"
    boot = [f"[    1.{n:02}] booting {n}" for n in range(30)]
    report = [
        "[   13.80] sysrq: Trigger a crash",
        "[   13.81] Kernel panic - not syncing: sysrq triggered crash",
        *[f"[   13.{n + 82}]  ? do_syscall_64+0x69/0xb0" for n in range(60)],
        "[   13.99] RIP: 0033:0x7faccb3fd350",
    ]
    log.write_text("\n".join(boot + report) + "\n")
    tail = console_tail(log, lines=10).split("\n")
    assert len(tail) == 10
    assert tail[0] == "[    1.27] booting 27"  # three lines before the report
    assert "[   13.80] sysrq: Trigger a crash" in tail
    assert "Kernel panic - not syncing: sysrq triggered crash" in "\n".join(tail)
