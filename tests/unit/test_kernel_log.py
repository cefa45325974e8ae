"""The console page's Kernel log pane reads the guest's kernel log file (ttyS0
since power-on) in pieces: vms.kernel_log and GET /vms/<id>/kernel-log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from tests.conftest import World, client_for
from vms import lifecycle
from vms.kernel_log import KERNEL_LOG_CHUNK, kernel_log_read
from vms.models import Host, LabVM, VMState

BOOT = "[    0.000000] Linux version 6.1.0-28-amd64\n[    0.000000] Command line: root=/dev/vda\n"


def test_a_first_read_has_everything_since_power_on(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    log.write_text(BOOT)
    piece = kernel_log_read(path=log, guest="g1", offset=0, file="")
    assert piece.text == BOOT
    assert piece.offset == len(BOOT)
    assert piece.restarted
    assert not piece.more


def test_the_next_read_has_only_what_came_since(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    log.write_text(BOOT)
    first = kernel_log_read(path=log, guest="g1", offset=0, file="")
    with log.open("a") as f:
        f.write("[   21.07] sysrq: Trigger a crash\n")
    second = kernel_log_read(path=log, guest="g1", offset=first.offset, file=first.file)
    assert second.text == "[   21.07] sysrq: Trigger a crash\n"
    assert not second.restarted
    assert kernel_log_read(path=log, guest="g1", offset=second.offset, file=second.file).text == ""


def test_a_new_log_file_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    log.write_text(BOOT * 3)
    before = kernel_log_read(path=log, guest="g1", offset=0, file="")
    log.unlink()  # a Reset: a fresh folder, a fresh log (longer here), a new domain
    log.write_text(BOOT * 4)
    after = kernel_log_read(path=log, guest="g2", offset=before.offset, file=before.file)
    assert after.restarted
    assert after.text == BOOT * 4


def test_a_long_log_is_read_from_its_last_piece_then_in_pieces(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    log.write_bytes(b"x" * (KERNEL_LOG_CHUNK * 2 + 10))
    piece = kernel_log_read(path=log, guest="g1", offset=0, file="")
    assert piece.start == KERNEL_LOG_CHUNK + 10
    assert len(piece.text) == KERNEL_LOG_CHUNK
    with log.open("ab") as f:
        f.write(b"y" * (KERNEL_LOG_CHUNK + 1))
    more = kernel_log_read(path=log, guest="g1", offset=piece.offset, file=piece.file)
    assert more.more
    assert not more.restarted
    assert more.text == "y" * KERNEL_LOG_CHUNK
    rest = kernel_log_read(path=log, guest="g1", offset=more.offset, file=more.file)
    assert rest.text == "y"
    assert not rest.more


def test_a_character_cut_at_the_end_waits_for_the_next_read(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    log.write_bytes("ok é".encode()[:-1])
    piece = kernel_log_read(path=log, guest="g1", offset=0, file="")
    assert piece.text == "ok "
    with log.open("ab") as f:
        f.write("é".encode()[-1:])
    assert kernel_log_read(path=log, guest="g1", offset=piece.offset, file=piece.file).text == "é"


def test_no_log_yet_is_empty(tmp_path: Path) -> None:
    piece = kernel_log_read(path=tmp_path / "kernel.log", guest="g1", offset=0, file="")
    assert piece.text == ""
    assert piece.offset == 0


@pytest.fixture
def alices_vm(world: World, settings: Any, tmp_path: Path) -> LabVM:
    settings.VM_DIR = tmp_path
    vm = LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=VMState.PROVISIONING,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    files = lifecycle.vm_files(vm)
    files.create()
    files.kernel_log.write_text(BOOT)
    return vm


def test_the_owner_and_their_instructor_read_it(world: World, alices_vm: LabVM) -> None:
    for user in (world.alice, world.tess):
        body = client_for(user).get(f"/vms/{alices_vm.pk}/kernel-log?offset=0").json()
        assert body["text"] == BOOT
        assert body["state"] == "provisioning"
        again = client_for(user).get(
            f"/vms/{alices_vm.pk}/kernel-log?offset={body['offset']}&file={body['file']}"
        )
        assert again.json()["text"] == ""


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_everyone_else_gets_404(world: World, alices_vm: LabVM, who: str) -> None:
    response = client_for(getattr(world, who)).get(f"/vms/{alices_vm.pk}/kernel-log")
    assert response.status_code == 404


def test_a_bad_offset_reads_from_the_start(world: World, alices_vm: LabVM) -> None:
    body = client_for(world.alice).get(f"/vms/{alices_vm.pk}/kernel-log?offset=-5x").json()
    assert body["text"] == BOOT


def test_a_log_virtlogd_rotated_out_of_reach_reads_as_empty(tmp_path: Path) -> None:
    """virtlogd (root) starts a rotated log as root's, 0600; the site runs as
    the user kernellab: its readers see nothing there, and never fail."""
    from exercises.grading.console_log import log_since, log_size
    from vms.crashes import console_tail

    log = tmp_path / "kernel.log"
    log.write_text(BOOT)
    refused = PermissionError(13, "Permission denied", str(log))
    with (
        mock.patch("builtins.open", side_effect=refused),
        mock.patch.object(Path, "open", side_effect=refused),
        mock.patch.object(Path, "stat", side_effect=refused),
    ):
        piece = kernel_log_read(path=log, guest="g", offset=0, file="")
        assert (piece.text, piece.offset) == ("", 0)
        assert console_tail(log) == ""
        assert log_since(log, 0) == ""
        assert log_size(log) == 0
