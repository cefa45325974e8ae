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
Each plain and cold run is also split where the time goes: until QEMU's
process exists (for the platform: the view, the queue, the worker's own
steps, the overlay, libvirt defining and spawning it), until the kernel's
first line on the serial port (QEMU's start-up; libvirt's QMP set-up happens
here), and the boot itself to the prompt.
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

from benchmarks.support import configure, destroy_all, start_lab

# Clock ticks per second of /proc/<pid>/stat's start time.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PHASES = ("to QEMU's process", "to the kernel's first line", "to the prompt")

WORK = Path("/var/lib/kernellab/bench-boot")
# Debian's own: ro + quiet (what update-grub writes), console on the serial port.
DEBIAN_DEFAULT_CMDLINE = "root=/dev/vda ro quiet console=ttyS0 noirqdebug"
# DESIGN.md, "Measured on this kind of machine": minimal init (no systemd),
# 6.5 MB initrd, through libvirt.
TRIMMED_REFERENCE_SECONDS = 7.8


def process_started(disk: Path) -> float | None:
    """When the QEMU process using ``disk`` started, on time.monotonic()'s
    clock (10 ms resolution), or None when there is none."""
    boot_offset = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(disk).encode() not in (proc / "cmdline").read_bytes():
                continue
            # Field 22, after the command name in parentheses (which may hold spaces).
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        return int(stat[19]) / CLOCK_TICKS - boot_offset
    return None


def watch_boot(
    started: float, kernel_log: Path, shell_log: Path, prompt: bytes, disk: Path
) -> dict[str, float]:
    """Seconds from ``started`` to each of PHASES' ends; the kernel's first
    line is when its log first holds bytes (polled every 5 ms)."""
    deadline = started + 180
    first_line = None
    qemu = None
    while time.monotonic() < deadline:
        if qemu is None:
            qemu = process_started(disk)
        if first_line is None and kernel_log.is_file() and kernel_log.stat().st_size:
            first_line = time.monotonic()
        if shell_log.is_file() and prompt in shell_log.read_bytes():
            ended = time.monotonic()
            ends = (qemu or started, first_line or ended, ended)
            return {phase: end - started for phase, end in zip(PHASES, ends, strict=True)}
        time.sleep(0.005)
    raise TimeoutError(f"{prompt!r} not in {shell_log} after 180 s")


def plain_qemu(image: object, cmdline: str | None = None, *, work: Path = WORK) -> dict[str, float]:
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
        return watch_boot(
            started, folder.kernel_log, folder.shell_log, b"root@plainqemu", folder.disk
        )
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

    def click_to_prompt() -> dict[str, float]:
        started = time.monotonic()
        vm = start_lab(client)  # returns once the worker names the domain, before the overlay
        worker_at_boot.append(time.monotonic() - started)
        files = lifecycle.vm_files(vm)
        phases = watch_boot(
            started, files.kernel_log, files.shell_log, f"root@{vm.hostname}".encode(), files.disk
        )
        vm.refresh_from_db()
        lifecycle.destroy(str(vm.id)) if vm.transition(vm.state, VMState.DESTROYING) else None
        return phases

    worker_at_boot: list[float] = []
    breakdowns: dict[str, list[dict[str, float]]] = {
        "plain QEMU": [],
        "platform, cold": [],
        "platform, pool": [],
        "plain, Debian cmdline": [],
    }
    for _ in range(args.runs):
        breakdowns["plain QEMU"].append(plain_qemu(image))
        breakdowns["plain, Debian cmdline"].append(plain_qemu(image, DEBIAN_DEFAULT_CMDLINE))
    for pool_size, label in ((0, "platform, cold"), (1, "platform, pool")):
        with override_settings(VM_POOL_SIZE=pool_size):
            os.environ["VM_POOL_SIZE"] = str(pool_size)
            with host_worker(WORK, "local", VM_POOL_SIZE=str(pool_size)):
                for _ in range(args.runs):
                    if pool_size:
                        lifecycle.pool_fill("local", 1024, 1)
                    breakdowns[label].append(click_to_prompt())
                    if pool_size:
                        worker_at_boot.pop()
                    while pool_size and pool.building_count(profile):
                        time.sleep(0.5)  # let the worker's refill finish before the next run

    results = {label: [phases[PHASES[-1]] for phases in runs] for label, runs in breakdowns.items()}
    base = statistics.median(results["plain QEMU"])
    print(f"\n{'path':<22}{'median s':>10}{'runs':>28}{'÷ plain QEMU':>14}")
    for label, values in results.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{label:<22}{median:>10.2f}{runs:>28}{median / base:>14.2f}")
    print(f"\n{'where the time goes (medians, s)':<34}" + "".join(f"{p:>28}" for p in PHASES))
    for label in ("plain QEMU", "platform, cold"):
        medians = [statistics.median(run[phase] for run in breakdowns[label]) for phase in PHASES]
        print(f"{label:<34}" + "".join(f"{m:>28.2f}" for m in medians))
    print(
        "platform, cold: click to the worker naming the domain (the view, the queue, the "
        f"worker's checks) {statistics.median(worker_at_boot):.2f} s; the rest of the "
        "first column is the overlay and libvirt defining and spawning QEMU"
    )
    cold = statistics.median(results["platform, cold"])
    print(
        f"\ncold click-to-prompt {cold:.2f} s; the trimmed guest of DESIGN.md (minimal init, "
        f"no systemd) {TRIMMED_REFERENCE_SECONDS:.1f} s: "
        f"{cold / TRIMMED_REFERENCE_SECONDS:.2f}x"
    )
    destroy_all(WORK)


if __name__ == "__main__":
    main()
