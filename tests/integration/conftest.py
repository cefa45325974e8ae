"""Fixtures for tests against real libvirt driving real QEMU guests (TCG).

The guest image is the platform's own default image, built once and cached
(./kernellab install builds it; the first test builds it if it is missing).
Every VM file lives under a per-test folder in /var/lib/kernellab/test-vms,
which libvirt's qemu user can reach (pytest's tmp folders are private).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import LazySettings

from vms import lifecycle
from vms.hypervisor.errors import HypervisorError
from vms.hypervisor.guest import Guest
from vms.images import BuiltImage, ensure_image
from vms.models import Host

TEST_VM_ROOT = Path("/var/lib/kernellab/test-vms")


@pytest.fixture
def no_enqueue() -> Iterator[Any]:
    """The worker-side steps are called directly in these tests: nothing is
    sent to a Celery queue."""
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture(scope="session")
def lab_image() -> BuiltImage:
    return ensure_image(progress=lambda text: print(f"image: {text}"))


@pytest.fixture
def vm_dir(settings: LazySettings) -> Iterator[Path]:
    folder = TEST_VM_ROOT / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, mode=0o755)
    TEST_VM_ROOT.chmod(0o755)
    settings.VM_DIR = folder
    settings.VIRT_TYPE = "qemu"  # nested KVM hangs on these machines
    settings.VM_POOL_SIZE = 0
    yield folder
    leftover = [g.name for g in lifecycle.hypervisor("qemu:///system").guests() if _in(g, folder)]
    for name in leftover:
        guest = lifecycle.hypervisor("qemu:///system").lookup(name)
        guest.destroy()
        guest.undefine()
    shutil.rmtree(folder, ignore_errors=True)
    assert not leftover, f"test left domains behind: {leftover}"


def _in(guest: Guest, folder: Path) -> bool:
    """Whether the guest is one of ours with files in this test's folder; a
    domain of another run that vanishes while we look is not."""
    try:
        metadata = guest.metadata()
        return metadata is not None and metadata.vm_id != "probe" and str(folder) in guest.xml()
    except HypervisorError:
        return False


@pytest.fixture
def own_host() -> Host:
    """A host of this test's own (its own queues), the only one enabled."""
    Host.objects.update(enabled=False)
    return Host.objects.create(name=f"faults-{uuid.uuid4().hex[:8]}", uri="qemu:///system")


def host_env(host: Host, vm_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker of ``host`` (this machine's libvirtd):
    this test's VM folder, TCG, no warm pool."""
    return {
        "VM_DIR": str(vm_dir),
        "VIRT_TYPE": "qemu",
        "VM_POOL_SIZE": "0",
        "KERNELLAB_HOST_NAME": host.name,
        **extra,
    }
