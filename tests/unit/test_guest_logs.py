"""A lab's console logs wherever the lab runs (vms.guest_logs): read from the
VM folder when this machine has it; asked of the lab's host otherwise (its
lab worker reads them), within GUEST_LOG_WAIT_SECONDS; a host that does not
answer in time gives an empty read that says so, never a hang."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout
from django.utils import timezone

from tests.conftest import World, client_for
from vms import lifecycle
from vms.guest_logs import SCROLLBACK_UNAVAILABLE, kernel_log_piece, shell_scrollback
from vms.models import Host, LabVM, VMState
from vms.tasks import guest_log_read

BOOT = "[    0.000000] Linux version 6.1.0-28-amd64\n"


@pytest.fixture
def remote_vm(world: World, settings: Any, tmp_path: Path) -> LabVM:
    """A lab on host h2, whose folder is on h2's disk, not this machine's."""
    settings.VM_DIR = tmp_path / "here"
    return LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.create(name="h2", uri="qemu+ssh://h2/system"),
        state=VMState.RUNNING,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def on_its_host(vm: LabVM, tmp_path: Path, settings: Any) -> None:
    """Write the VM's logs where its host's worker (VM_DIR there) has them."""
    settings.VM_DIR = tmp_path / "h2"
    files = lifecycle.vm_files(vm)
    files.create()
    files.kernel_log.write_text(BOOT)
    files.shell_log.write_bytes(b"root@lab:~# echo hi\r\nhi\r\n")


class Answer:
    """What AsyncResult.get gives back: the host's worker runs the task now."""

    def __init__(self, args: tuple[Any, ...], here: Path, settings: Any) -> None:
        self.args = args
        self.here = here
        self.settings = settings

    def get(self, timeout: float, **kwargs: Any) -> Any:
        here = self.settings.VM_DIR
        self.settings.VM_DIR = self.here  # as the worker on h2 sees it
        try:
            return guest_log_read.run(*self.args)
        finally:
            self.settings.VM_DIR = here

    def forget(self) -> None:
        pass


def test_a_remote_labs_logs_are_read_by_its_hosts_worker(
    world: World, remote_vm: LabVM, tmp_path: Path, settings: Any
) -> None:
    on_its_host(remote_vm, tmp_path, settings)
    settings.VM_DIR = tmp_path / "here"
    settings.GUEST_LOG_WAIT_SECONDS = 3
    sent: list[dict[str, Any]] = []

    def apply_async(args: tuple[Any, ...], **options: Any) -> Answer:
        sent.append(options)
        return Answer(args, tmp_path / "h2", settings)

    with mock.patch.object(guest_log_read, "apply_async", side_effect=apply_async):
        assert shell_scrollback(vm=remote_vm) == b"root@lab:~# echo hi\r\nhi\r\n"
        body = client_for(world.alice).get(f"/vms/{remote_vm.pk}/kernel-log?offset=0").json()
    assert body["text"] == BOOT
    assert body["offset"] == len(BOOT)
    assert sent == [{"queue": "host.h2.lab", "expires": 3.0}] * 2
    assert guest_log_read.ignore_result is False  # the site ignores results by default


def test_a_host_that_does_not_answer_in_time_gives_an_empty_read(
    world: World, remote_vm: LabVM, settings: Any
) -> None:
    late = mock.Mock()
    late.get.side_effect = CeleryTimeout("no answer")
    with mock.patch.object(guest_log_read, "apply_async", return_value=late):
        assert shell_scrollback(vm=remote_vm) == SCROLLBACK_UNAVAILABLE
        piece = kernel_log_piece(vm=remote_vm, offset=120, file="uuid:7")
        body = client_for(world.alice).get(f"/vms/{remote_vm.pk}/kernel-log?offset=9").json()
    # Nothing, from where the reader was: it asks again from there.
    assert (piece.text, piece.offset, piece.file, piece.restarted) == ("", 120, "uuid:7", False)
    assert (body["text"], body["offset"]) == ("", 9)
    assert late.get.call_args.kwargs["timeout"] == settings.GUEST_LOG_WAIT_SECONDS


def test_a_lab_on_this_machine_is_read_here(
    world: World, remote_vm: LabVM, tmp_path: Path, settings: Any
) -> None:
    on_its_host(remote_vm, tmp_path, settings)  # VM_DIR is the folder's machine now
    with mock.patch.object(guest_log_read, "apply_async") as asked:
        assert shell_scrollback(vm=remote_vm) == b"root@lab:~# echo hi\r\nhi\r\n"
        assert kernel_log_piece(vm=remote_vm, offset=0, file="").text == BOOT
    asked.assert_not_called()
