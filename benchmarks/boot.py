"""Click-to-prompt through the platform vs a plain QEMU boot, in one run.

    .venv/bin/python benchmarks/boot.py [--runs 3]

Baseline: the same image, kernel and command line booted by plain
`qemu-system-x86_64` (TCG, 1 vCPU, 1 GiB), timed from process start to the
shell prompt on hvc0. Platform: POST /exercises/<slug>/start through the real
view, Redis and a real Celery worker, timed until the prompt with the VM's own
hostname appears on its console log; once with the warm pool off (a cold boot
through libvirt) and once with it on (the normal case). Medians and ratios.
Uses its own SQLite database and VM folder; leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path("/var/lib/kernellab/bench-boot")
os.environ.update(
    DJANGO_SETTINGS_MODULE="labplatform.settings",
    DATABASE_URL=f"sqlite:///{WORK / 'bench.sqlite3'}",
    VM_DIR=str(WORK / "vms"),
    VIRT_TYPE="qemu",
    LOG_LEVEL="WARNING",
    REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
)


def wait_for(path: Path, needle: bytes, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and needle in path.read_bytes():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{needle!r} not in {path} after {timeout}s")


def plain_qemu(image: object) -> float:
    from vms.hypervisor.overlay import overlay_create
    from vms.images import BuiltImage

    assert isinstance(image, BuiltImage)
    folder = Path(tempfile.mkdtemp(dir=WORK))
    overlay_create(base=image.disk, overlay=folder / "disk.qcow2")
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
        f"{image.cmdline} systemd.hostname=plainqemu",
        "-drive",
        f"file={folder / 'disk.qcow2'},if=virtio,format=qcow2",
        "-serial",
        f"file:{folder / 'kernel.log'}",
        "-device",
        "virtio-serial",
        "-chardev",
        f"file,id=shell,path={folder / 'shell.log'}",
        "-device",
        "virtconsole,chardev=shell",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(folder / "shell.log", b"root@plainqemu")
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "vms").mkdir(parents=True)
    os.chmod(WORK, 0o755)  # noqa: S103 - qemu (libvirt-qemu user) must traverse it

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings

    from tests.support.processes import celery_worker
    from vms import lifecycle, pool
    from vms.images import ensure_image
    from vms.models import LabVM, VMState

    call_command("migrate", verbosity=0)
    call_command("seed_demo", password="bench", verbosity=0)
    image = ensure_image(progress=print)
    from exercises.models import Exercise
    from labplatform.courses.models import Cohort
    from labplatform.courses.services import assignment_set

    exercise, _ = Exercise.objects.get_or_create(slug="boot-bench", defaults={"title": "Boot"})
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    assignment_set(
        cohort=Cohort.objects.get(slug="demo"),
        exercise=exercise,
        opens_at=now,
        due_at=now + timedelta(days=1),
        closes_at=now + timedelta(days=2),
    )
    client = Client()
    client.login(username="alice", password="bench")
    profile = lifecycle.profile_for("qemu:///system", image, 1024, 1)

    def click_to_prompt() -> float:
        started = time.monotonic()
        response = client.post("/exercises/boot-bench/start", HTTP_ACCEPT="application/json")
        assert response.status_code == 200, response.content
        vm = LabVM.objects.get(pk=response.json()["vm"])
        deadline = time.monotonic() + 180
        while not vm.domain_uuid:
            if vm.state == VMState.FAILED or time.monotonic() > deadline:
                raise RuntimeError(f"VM did not start: {vm.error_message}")
            time.sleep(0.02)
            vm.refresh_from_db()
        wait_for(lifecycle.vm_files(vm).shell_log, f"root@{vm.hostname}".encode())
        seconds = time.monotonic() - started
        vm.refresh_from_db()
        lifecycle.destroy(str(vm.id)) if vm.transition(vm.state, VMState.DESTROYING) else None
        return seconds

    results: dict[str, list[float]] = {"plain QEMU": [], "platform, cold": [], "platform, pool": []}
    for _ in range(args.runs):
        results["plain QEMU"].append(plain_qemu(image))
    for pool_size, label in ((0, "platform, cold"), (1, "platform, pool")):
        with override_settings(VM_POOL_SIZE=pool_size):
            os.environ["VM_POOL_SIZE"] = str(pool_size)
            with celery_worker(WORK, "host.local", VM_POOL_SIZE=str(pool_size)):
                for _ in range(args.runs):
                    if pool_size:
                        lifecycle.pool_fill("local", 1024, 1)
                    results[label].append(click_to_prompt())
                    while pool_size and pool.building_count(profile):
                        time.sleep(0.5)  # let the worker's refill finish before the next run

    base = statistics.median(results["plain QEMU"])
    print(f"\n{'path':<18}{'median s':>10}{'runs':>28}{'÷ plain QEMU':>14}")
    for label, values in results.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{label:<18}{median:>10.2f}{runs:>28}{median / base:>14.2f}")
    for guest in lifecycle.hypervisor("qemu:///system").guests():
        if str(WORK) in guest.xml():
            guest.destroy()
            guest.undefine()
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
