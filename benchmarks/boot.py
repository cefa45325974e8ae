"""Click-to-prompt through the platform vs a plain QEMU boot, in one run.

    ./kernellab bench boot [--runs 3]      (or .venv/bin/python -m benchmarks.boot)

Baseline: the same image, kernel and command line booted by plain
`qemu-system-x86_64` (TCG, 1 vCPU, 1 GiB), timed from process start to the
shell prompt on hvc0. Platform: POST /exercises/<slug>/start through the real
view, Redis and a real Celery worker, timed until the prompt with the VM's own
hostname appears on its console log; once with the warm pool off (a cold boot
through libvirt) and once with it on (the normal case). Medians and ratios.
Also plain QEMU with Debian's default kernel command line on the same image
(root mounted read-only then fsck'd and remounted, systemd's status output,
the default log level) to show what the recipe's command line saves; the
units the recipe masks stay masked in the image. The cold figure is also
set beside the trimmed guest of DESIGN.md (a minimal init instead of systemd,
7.8 s to a shell through libvirt on this kind of machine), the floor the
image's boot trimming aims at.
Uses its own SQLite database and VM folder; leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.support import configure, destroy_all, start_lab, wait_for

WORK = Path("/var/lib/kernellab/bench-boot")
# Debian's own: ro + quiet (what update-grub writes), console on the serial port.
DEBIAN_DEFAULT_CMDLINE = "root=/dev/vda ro quiet console=ttyS0 noirqdebug"
# DESIGN.md, "Measured on this kind of machine": minimal init (no systemd),
# 6.5 MB initrd, through libvirt.
TRIMMED_REFERENCE_SECONDS = 7.8


def plain_qemu(image: object, cmdline: str | None = None, *, work: Path = WORK) -> float:
    from vms.guest_folder import GuestFolder
    from vms.hypervisor.overlay import overlay_create
    from vms.images import BuiltImage

    assert isinstance(image, BuiltImage)
    folder = GuestFolder(Path(tempfile.mkdtemp(dir=work)))
    overlay_create(base=image.disk, overlay=folder.disk)
    argv = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-m",
        "1024",
        "-smp",
        "1",
        "-machine",
        "pc",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        f"{cmdline or image.cmdline} systemd.hostname=plainqemu",
        "-drive",
        f"file={folder.disk},if=virtio,format=qcow2",
        "-serial",
        f"file:{folder.kernel_log}",
        "-device",
        "virtio-serial",
        "-chardev",
        f"file,id=shell,path={folder.shell_log}",
        "-device",
        "virtconsole,chardev=shell",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(folder.shell_log, b"root@plainqemu")
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
        folder.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure(WORK)
    from django.test import Client
    from django.test.utils import override_settings

    from tests.support.processes import host_worker
    from vms import lifecycle, pool
    from vms.images import ensure_image
    from vms.models import VMState

    image = ensure_image(progress=print)
    client = Client()
    from labplatform.accounts.models import User

    client.force_login(User.objects.get(username="alice"))  # axes wants a request for login()
    profile = lifecycle.profile_for("qemu:///system", image, 1024, 1)

    def click_to_prompt() -> float:
        started = time.monotonic()
        vm = start_lab(client)
        wait_for(lifecycle.vm_files(vm).shell_log, f"root@{vm.hostname}".encode())
        seconds = time.monotonic() - started
        vm.refresh_from_db()
        lifecycle.destroy(str(vm.id)) if vm.transition(vm.state, VMState.DESTROYING) else None
        return seconds

    results: dict[str, list[float]] = {
        "plain QEMU": [],
        "platform, cold": [],
        "platform, pool": [],
        "plain, Debian cmdline": [],
    }
    for _ in range(args.runs):
        results["plain QEMU"].append(plain_qemu(image))
        results["plain, Debian cmdline"].append(plain_qemu(image, DEBIAN_DEFAULT_CMDLINE))
    for pool_size, label in ((0, "platform, cold"), (1, "platform, pool")):
        with override_settings(VM_POOL_SIZE=pool_size):
            os.environ["VM_POOL_SIZE"] = str(pool_size)
            with host_worker(WORK, "local", VM_POOL_SIZE=str(pool_size)):
                for _ in range(args.runs):
                    if pool_size:
                        lifecycle.pool_fill("local", 1024, 1)
                    results[label].append(click_to_prompt())
                    while pool_size and pool.building_count(profile):
                        time.sleep(0.5)  # let the worker's refill finish before the next run

    base = statistics.median(results["plain QEMU"])
    print(f"\n{'path':<22}{'median s':>10}{'runs':>28}{'÷ plain QEMU':>14}")
    for label, values in results.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{label:<22}{median:>10.2f}{runs:>28}{median / base:>14.2f}")
    cold = statistics.median(results["platform, cold"])
    print(
        f"\ncold click-to-prompt {cold:.2f} s; the trimmed guest of DESIGN.md (minimal init, "
        f"no systemd) {TRIMMED_REFERENCE_SECONDS:.1f} s: "
        f"{cold / TRIMMED_REFERENCE_SECONDS:.2f}x"
    )
    destroy_all(WORK)


if __name__ == "__main__":
    main()
