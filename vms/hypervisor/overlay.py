"""Per-VM copy-on-write disks: a qcow2 overlay on a read-only base image.
A base image is never copied or written."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from vms.hypervisor.errors import HypervisorError


def overlay_create(*, base: Path, overlay: Path) -> None:
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.unlink(missing_ok=True)
    result = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise HypervisorError(f"creating the disk overlay failed: {result.stderr.strip()}")


def disk_info(disk: Path) -> dict[str, object] | None:
    """qemu-img's description of a disk image (virtual-size, actual-size,
    backing-filename...), read even while a guest has it open; None if it
    cannot be read."""
    result = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(disk)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return None
    return dict(json.loads(result.stdout))


def overlay_backing_file(overlay: Path) -> Path | None:
    backing = (disk_info(overlay) or {}).get("backing-filename")
    return Path(str(backing)) if backing else None


def vm_files_remove(directory: Path) -> None:
    """Remove a VM's directory (overlay, logs, saved state), if any."""
    shutil.rmtree(directory, ignore_errors=True)
