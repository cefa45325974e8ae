"""The site without root: ``./kernellab serve`` (what ``./kernellab run`` does
once set-up is done) starts the Procfile's web, lab worker and watcher as
the user kernellab, and that user drives libvirt through the socket that
labplatform/ops/libvirtd.conf opens to group libvirt, and nobody else.

The libvirtd is this test's own (``./kernellab host NAME start``, which starts
it with the same configuration as ``./kernellab services``): the machine's may
be shared and is never restarted by a test. The service user is created by
the script's own set-up (``serve`` runs it), not by hand."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import World
from tests.support.processes import (
    ROOT,
    Process,
    free_port,
    port_open,
    purge_queues,
    subprocess_env,
)
from tests.support.second_host import SecondHost, second_host
from vms import services
from vms.images import BuiltImage
from vms.models import Host, LabVM, VMState
from vms.queues import host_queues

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

SERVICE_USER = "kernellab"
KERNELLAB = str(ROOT / "kernellab")


@pytest.fixture(scope="module")
def machine() -> Iterator[SecondHost]:
    with second_host() as host:
        yield host


@pytest.fixture(scope="module")
def service_user() -> str:
    """Created by the set-up that creates it on a real machine."""
    subprocess.run([KERNELLAB, "services"], capture_output=True, timeout=120, check=True)
    return SERVICE_USER


@dataclass(frozen=True)
class Ids:
    uids: tuple[int, ...]  # real, effective, saved, file system
    gids: tuple[int, ...]
    groups: tuple[int, ...]
    cap_eff: int


def ids_of(pid: int) -> Ids:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return Ids(
        uids=tuple(int(n) for n in fields["Uid"].split()),
        gids=tuple(int(n) for n in fields["Gid"].split()),
        groups=tuple(int(n) for n in fields["Groups"].split()),
        cap_eff=int(fields["CapEff"].strip(), 16),
    )


def descendants(root: int) -> dict[int, str]:
    """A process and everything it started (honcho puts each of its processes
    in a session of its own): pid → command line."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdlines[int(entry.name)] = (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            )
        except OSError:  # gone meanwhile
            continue
        parents[int(entry.name)] = int(stat_fields[1])  # field 4, the parent's pid
    found = {root}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return {pid: cmdlines[pid] for pid in found if pid in cmdlines}


def as_user(user: str, *command: str) -> subprocess.CompletedProcess[str]:
    gid = pwd.getpwnam(user).pw_gid
    return subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={gid}", "--init-groups", "--", *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def healthz(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:  # noqa: S310 (our URL)
        return dict(json.loads(response.read()))


def test_kernellab_serve_runs_the_site_unprivileged_and_it_drives_libvirt(
    world: World, machine: SecondHost, lab_image: BuiltImage, tmp_path: Path
) -> None:
    Host.objects.update(enabled=False)  # labs go to this test's host only
    host = Host.objects.create(name=f"svc-{uuid.uuid4().hex[:6]}", uri=machine.uri, max_vms=2)
    purge_queues(host_queues(host.name), settings.REDIS_URL)
    port = free_port()
    serve = Process(
        "kernellab serve web lab watcher",
        [KERNELLAB, "serve", "web", "lab", "watcher"],
        subprocess_env(
            KERNELLAB_BIND=f"127.0.0.1:{port}",
            KERNELLAB_HOST_NAME=host.name,
            LIBVIRT_URI=machine.uri,
            VM_DIR=str(machine.vm_dir),
            VIRT_TYPE="qemu",  # nested KVM hangs on these machines
            VM_POOL_SIZE="0",
            LOG_LEVEL="INFO",
        ),
        tmp_path / "serve.log",
    )
    try:
        serve.wait_until(lambda: port_open(port), 60, "web listening")
        serve.wait_until(lambda: "ready." in serve.full_output(), 60, "the lab worker ready")
        serve.wait_until(lambda: "watching" in serve.full_output(), 60, "the watcher watching")

        user = pwd.getpwnam(SERVICE_USER)
        libvirt_gid = grp.getgrnam("libvirt").gr_gid
        processes = descendants(serve.popen.pid)
        web = [pid for pid, cmd in processes.items() if "uvicorn labplatform.asgi" in cmd]
        workers = [pid for pid, cmd in processes.items() if "celery" in cmd and " worker " in cmd]
        assert web, processes
        assert workers, processes
        assert any("manage.py watch_host" in cmd for cmd in processes.values()), processes
        for pid, cmd in processes.items():
            ids = ids_of(pid)
            assert ids.uids == (user.pw_uid,) * 4, (cmd, ids)
            assert ids.gids == (user.pw_gid,) * 4, (cmd, ids)
            assert 0 not in ids.groups, (cmd, ids)
            assert libvirt_gid in ids.groups, (cmd, ids)
            assert ids.cap_eff == 0, (cmd, ids)

        # The web process reaches this host's libvirtd (/healthz pings it).
        report = healthz(f"http://127.0.0.1:{port}")
        checks = report["checks"]
        assert isinstance(checks, dict)
        assert checks["hosts"][host.name]["ok"] is True, report

        # The worker provisions a lab there: its folder is the service user's,
        # the guest runs (QEMU as libvirt's qemu user, reading that folder).
        vm = services.lab_start(user=world.alice, assignment=world.hello, preview=True)
        serve.wait_until(lambda: _state(vm) in (VMState.RUNNING, VMState.FAILED), 150, "the lab")
        vm.refresh_from_db()
        assert vm.state == VMState.RUNNING, (vm.error_code, vm.error_message, serve.output())
        folder = next(p for p in machine.vm_dir.iterdir() if str(vm.pk) in p.name)
        assert folder.stat().st_uid == user.pw_uid
        # virtlogd (root) writes the guest's logs; the service user reads them
        # (console scrollback, the kernel log pane, panic reasons).
        kernel_log = folder / "kernel.log"
        assert kernel_log.stat().st_uid == (folder / "shell.log").stat().st_uid == user.pw_uid
        serve.wait_until(
            lambda: "Linux version" in as_user(SERVICE_USER, "cat", str(kernel_log)).stdout,
            60,
            "the kernel log, read by the service user",
        )
        listed = subprocess.run(
            ["virsh", "-c", machine.uri, "list", "--name"], capture_output=True, text=True
        )
        assert vm.domain_name in listed.stdout.split()
    finally:
        serve.stop()
        purge_queues(host_queues(host.name), settings.REDIS_URL)


def _state(vm: LabVM) -> str:
    vm.refresh_from_db()
    return vm.state


def test_libvirtds_socket_is_open_to_group_libvirt_and_to_no_one_else(
    machine: SecondHost, service_user: str
) -> None:
    socket = machine.folder / "run" / "libvirt" / "libvirt-sock"
    info = socket.stat()
    assert grp.getgrgid(info.st_gid).gr_name == "libvirt"
    assert stat.S_IMODE(info.st_mode) == 0o770
    assert as_user(service_user, "virsh", "-c", machine.uri, "version").returncode == 0
    refused = as_user("nobody", "virsh", "-c", machine.uri, "version")
    assert refused.returncode != 0
    assert "Permission denied" in refused.stderr


def test_serve_refuses_to_start_when_the_service_user_cannot_reach_libvirt(
    tmp_path: Path,
) -> None:
    nowhere = f"qemu+unix:///system?socket={tmp_path}/no-libvirt-sock"
    done = subprocess.run(
        [KERNELLAB, "serve", "web"],
        env={**os.environ, "LIBVIRT_URI": nowhere, "KERNELLAB_BIND": f"127.0.0.1:{free_port()}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert f"kernellab cannot reach libvirt at {nowhere}" in done.stderr
