"""What the benchmarks share: their own database and VM folder, the demo
course, a lab VM started through the real view and worker."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SLUG = "bench"


def configure(work: Path) -> None:
    """Point Django at a private SQLite file and VM folder under ``work``,
    wiped first, and create the demo course with an exercise to start."""
    # A benchmark stopped with SIGTERM still runs its clean-up (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    shutil.rmtree(work, ignore_errors=True)
    (work / "vms").mkdir(parents=True)
    os.chmod(work, 0o755)  # noqa: S103 - libvirt's qemu user must reach the disks
    os.environ.update(
        DJANGO_SETTINGS_MODULE="labplatform.settings",
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
        VM_DIR=str(work / "vms"),
        CONSOLE_RECORDING_DIR=str(work / "recordings"),
        VIRT_TYPE="qemu",
        LOG_LEVEL="WARNING",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from exercises.models import Exercise
    from labplatform.courses.models import Cohort
    from labplatform.courses.services import assignment_set

    call_command("migrate", verbosity=0)
    call_command("seed_demo", password="bench", verbosity=0)
    exercise, _ = Exercise.objects.get_or_create(slug=SLUG, defaults={"title": "Benchmark"})
    now = timezone.now()
    assignment_set(
        cohort=Cohort.objects.get(slug="demo"),
        exercise=exercise,
        opens_at=now,
        due_at=now + timedelta(days=1),
        closes_at=now + timedelta(days=2),
    )


def wait_for(path: Path, needle: bytes, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and needle in path.read_bytes():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{needle!r} not in {path} after {timeout}s")


def start_lab(client: Any, slug: str = SLUG) -> Any:
    """POST start as the logged-in client; return the LabVM once it has a
    domain (the caller decides what "ready" means)."""
    from vms.models import LabVM, VMState

    response = client.post(f"/exercises/{slug}/start", HTTP_ACCEPT="application/json")
    if response.status_code != 200:
        raise RuntimeError(f"start refused: {response.content!r}")
    vm = LabVM.objects.get(pk=response.json()["vm"])
    deadline = time.monotonic() + 180
    while not vm.domain_uuid:
        if vm.state == VMState.FAILED or time.monotonic() > deadline:
            raise RuntimeError(f"VM did not start: {vm.error_message}")
        time.sleep(0.02)
        vm.refresh_from_db()
    return vm


def destroy_all(work: Path) -> None:
    from vms import lifecycle

    for guest in lifecycle.hypervisor("qemu:///system").guests():
        try:
            ours = str(work) in guest.xml()
        except Exception as exc:  # another run's domain vanished while we looked
            print(f"skipping a domain that went away: {exc}")
            continue
        if ours:
            guest.destroy()
            guest.undefine()
    shutil.rmtree(work, ignore_errors=True)
