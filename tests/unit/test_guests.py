"""vms.guests.prepare_guest, the one way to get a running guest, against
libvirt's test:///default driver (the agent is stubbed: that driver has none),
and the warm pool's claim. Real guests: tests/integration/test_vm_pool_and_faults.py."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from tests.support.agents import RecordingAgent
from vms import guests, pool
from vms.guest_folder import GuestFolder
from vms.guests import GuestRole, prepare_guest
from vms.guests import _wake as wake  # the fixture below replaces guests._wake
from vms.hypervisor.agent import ExecResult
from vms.hypervisor.errors import AgentProtocolError
from vms.hypervisor.guest import Guest, GuestState
from vms.hypervisor.host import Host
from vms.images import BuiltImage
from vms.models import domain_name_for

ROLE = GuestRole(title="a test guest", vm_id="vm-1", owner="alice", hostname="lab-1")


@pytest.fixture
def host() -> Iterator[Host]:
    host = Host("test:///default")
    yield host
    host.close()


@pytest.fixture
def profile(tmp_path: Path, settings: object) -> pool.Profile:
    settings.VM_DIR = tmp_path / "vms"  # type: ignore[attr-defined]
    image_dir = tmp_path / "image"
    image_dir.mkdir()
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(image_dir / "disk.qcow2"), "64M"],
        check=True,
    )
    image = BuiltImage(
        name="kernel-lab", hash="f" * 64, directory=image_dir, kernel_release="6.1", cmdline="x"
    )
    return pool.Profile(image, "qemu", 512, 1)


@pytest.fixture(autouse=True)
def agent_answers() -> Iterator[mock.MagicMock]:
    with (
        mock.patch("vms.hypervisor.agent.GuestAgent.wait_ready", return_value=0.0) as wait,
        mock.patch("vms.guests._wake"),
    ):
        yield wait


@pytest.fixture(autouse=True)
def restore_without_xml_changes() -> Iterator[None]:
    """The test driver cannot restore with new XML (new paths and metadata);
    QEMU can (tests/integration). Here the new XML is defined after the restore."""

    def restore(self: Host, state_file: str, xml: str) -> Guest:
        self.conn.restore(state_file)
        return Guest(self.conn.defineXML(xml))

    with mock.patch.object(Host, "restore", restore):
        yield


def pool_entry(profile: pool.Profile, host: Host) -> uuid.UUID:
    """A saved guest in the pool, as guests.pool_add_entry leaves it."""
    domain_uuid = uuid.uuid4()
    entry = GuestFolder(profile.directory / str(domain_uuid))
    entry.create()
    entry.kernel_log.write_text("[    0.000000] Linux version 6.1\n")
    entry.shell_log.write_text("root@kernellab:~# ")
    entry.disk.write_bytes(b"overlay")
    spec = guests.guest_spec(profile, domain_uuid, entry, guests.POOL_ROLE)
    host.create_transient(spec.to_xml()).save(str(entry.state_file))
    return domain_uuid


def test_a_cold_boot_names_its_domain_before_it_exists_and_times_its_steps(
    host: Host, profile: pool.Profile, tmp_path: Path
) -> None:
    folder = GuestFolder(tmp_path / "vm")
    seen: list[tuple[uuid.UUID, bool]] = []

    def on_domain(domain_uuid: uuid.UUID) -> None:
        seen.append((domain_uuid, host.find(domain_name_for(domain_uuid)) is not None))

    progress: list[str] = []
    prepared = prepare_guest(
        host,
        profile,
        folder,
        ROLE,
        boot_timeout=5,
        use_pool=True,  # the pool is empty: a cold boot
        persistent=True,
        on_domain=on_domain,
        progress=progress.append,
    )
    assert not prepared.from_pool
    assert seen == [(uuid.UUID(prepared.guest.uuid), False)]
    assert prepared.guest.domain.isPersistent()
    assert prepared.guest.state() == GuestState.RUNNING
    assert folder.disk.is_file(), "an overlay on the image's disk"
    assert [step for step, _ in prepared.steps] == ["claim a pool entry", "boot", "agent answers"]
    assert progress == ["Booting the kernel", "Waiting for the guest to come up"]
    xml = prepared.guest.xml()
    assert str(folder.kernel_log) in xml
    assert str(folder.shell_log) in xml
    assert "systemd.hostname=lab-1" in xml


def test_a_transient_guest_is_gone_once_destroyed(
    host: Host, profile: pool.Profile, tmp_path: Path
) -> None:
    prepared = prepare_guest(host, profile, GuestFolder(tmp_path / "g"), ROLE, boot_timeout=5)
    assert not prepared.guest.domain.isPersistent()
    guests.discard(host, uuid.UUID(prepared.guest.uuid))
    assert host.find(prepared.guest.name) is None
    guests.discard(host, uuid.UUID(prepared.guest.uuid))  # idempotent


def test_a_pool_entry_becomes_the_guest_and_keeps_its_boot_log(
    host: Host, profile: pool.Profile, tmp_path: Path
) -> None:
    domain_uuid = pool_entry(profile, host)
    folder = GuestFolder(tmp_path / "vms" / "lab")
    prepared = prepare_guest(host, profile, folder, ROLE, boot_timeout=5, use_pool=True)
    assert prepared.from_pool
    assert prepared.guest.uuid == str(domain_uuid), "libvirt keeps a saved guest's uuid"
    assert pool.ready_count(profile) == 0
    assert not folder.state_file.exists(), "a pool entry is restored once"
    assert "Linux version" in folder.kernel_log.read_text(), "its boot, since power-on"
    assert not folder.shell_log.exists(), "the pool's prompt is not the student's"
    assert prepared.guest.metadata().vm_id == "vm-1"  # type: ignore[union-attr]
    assert [s for s, _ in prepared.steps] == [
        "claim a pool entry",
        "restore",
        "agent answers",
        "clock and hostname",
    ]


def test_a_reusable_saved_guest_is_restored_again_on_a_copy_of_its_disk(
    host: Host, profile: pool.Profile, tmp_path: Path
) -> None:
    domain_uuid = pool_entry(profile, host)
    saved = pool.SavedGuest(
        domain_uuid, GuestFolder(profile.directory / str(domain_uuid)), reusable=True
    )
    work = GuestFolder(tmp_path / "work")
    for _ in range(2):
        prepared = prepare_guest(host, profile, work, ROLE, boot_timeout=5, saved=saved)
        assert prepared.from_pool
        assert work.disk.read_bytes() == b"overlay"
        assert saved.folder.state_file.is_file(), "kept for the next restore"
        guests.discard(host, domain_uuid)
        work.remove()


def test_a_guest_whose_agent_never_answers_is_left_for_the_callers_cleanup(
    host: Host, profile: pool.Profile, tmp_path: Path, agent_answers: mock.MagicMock
) -> None:
    from vms.hypervisor.errors import AgentUnavailable

    agent_answers.side_effect = AgentUnavailable("not ready")
    named: list[uuid.UUID] = []
    with pytest.raises(AgentUnavailable):
        prepare_guest(
            host, profile, GuestFolder(tmp_path / "g"), ROLE, boot_timeout=1, on_domain=named.append
        )
    assert host.find(domain_name_for(named[0])) is not None
    guests.discard(host, named[0])
    assert host.find(domain_name_for(named[0])) is None


def agent_answering(exit_code: int = 0) -> RecordingAgent:
    return RecordingAgent(ExecResult(exit_code, None, b"", b"no such file", False, 0.1))


def test_a_restored_guest_gets_its_clock_and_hostname_in_one_exec() -> None:
    agent = agent_answering()
    before = time.time()
    wake(agent, "lab-1")  # type: ignore[arg-type]
    [call] = agent.calls  # one round trip, not one per setting
    argv = call["argv"]
    assert isinstance(argv, list)
    shell, flag, script, _name, stamp, hostname = argv
    assert (shell, flag, hostname) == ("/bin/sh", "-c", "lab-1")
    assert before <= float(stamp) <= time.time()
    assert 'date -u -s "@$1"' in script
    assert 'hostname "$2"' in script
    assert "/etc/hostname" in script


def test_a_restored_guest_without_a_hostname_keeps_the_pools() -> None:
    agent = agent_answering()
    wake(agent, "")  # type: ignore[arg-type]
    [call] = agent.calls
    argv = call["argv"]
    assert isinstance(argv, list)
    assert "hostname" not in argv[2]


def test_a_failed_wake_up_says_so() -> None:
    with pytest.raises(AgentProtocolError, match=r"clock and hostname failed.*no such file"):
        wake(agent_answering(exit_code=1), "lab-1")  # type: ignore[arg-type]
