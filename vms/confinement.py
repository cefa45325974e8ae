"""What one guest may take of its host, and the host's disk that no guest
may fill.

The limits come from the settings (VM_CPU_PERCENT, VM_MEMORY_OVERHEAD_MIB,
VM_DISK_*) and are declared in every guest's domain (vms.guests.guest_spec);
the hypervisor layer says which part of the system enforces each one
(vms.hypervisor.domain.GuestLimits). The disk check runs on the hypervisor
host, in the worker, before anything writes a guest's files there.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from vms.hypervisor.domain import LAB_CPU_WEIGHT, GuestLimits
from vms.hypervisor.errors import HostDiskFull

log = logging.getLogger(__name__)

MIB = 1024 * 1024

DISK_FULL_MESSAGE = (
    "The lab machine is out of disk space right now, so no lab can start on it. "
    "Try again later; the staff have been told."
)


def guest_limits(*, grading: bool = False) -> GuestLimits:
    """A guest's limits; a grading guest (a Submit's clean guest) weighs less
    than a lab guest when they compete for the host's cores
    (GRADING_CPU_WEIGHT_PERCENT), so that a wave of Submits does not slow
    the students working at their consoles or waiting for a Start."""
    weight = LAB_CPU_WEIGHT
    if grading:
        weight = max(2, LAB_CPU_WEIGHT * settings.GRADING_CPU_WEIGHT_PERCENT // 100)
    return GuestLimits(
        cpu_percent=settings.VM_CPU_PERCENT,
        cpu_weight=weight,
        memory_overhead_mib=settings.VM_MEMORY_OVERHEAD_MIB,
        disk_read_bytes_sec=settings.VM_DISK_READ_BYTES_PER_SEC,
        disk_write_bytes_sec=settings.VM_DISK_WRITE_BYTES_PER_SEC,
        disk_read_iops_sec=settings.VM_DISK_READ_IOPS,
        disk_write_iops_sec=settings.VM_DISK_WRITE_IOPS,
    )


@dataclass(frozen=True)
class DiskSpace:
    total: int
    free: int  # bytes an unprivileged writer may still use


def disk_space(directory: Path) -> DiskSpace:
    """The file system that holds ``directory`` (or its nearest existing parent)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = shutil.disk_usage(existing)
    return DiskSpace(total=usage.total, free=usage.free)


def disk_min_free(space: DiskSpace) -> int:
    return max(
        settings.HOST_DISK_MIN_FREE_MIB * MIB,
        space.total * settings.HOST_DISK_MIN_FREE_PERCENT // 100,
    )


def host_disk_room_check(*, directory: Path, doing: str) -> None:
    """Raise HostDiskFull (the student's sentence) when the guests' file
    system is below its free-space floor, and log the figures for the staff."""
    space = disk_space(directory)
    floor = disk_min_free(space)
    if space.free >= floor:
        return
    log.error(
        "host disk nearly full: %s has %d MiB free of %d MiB, below the floor of %d MiB "
        "(HOST_DISK_MIN_FREE_MIB / HOST_DISK_MIN_FREE_PERCENT); refused to %s",
        directory,
        space.free // MIB,
        space.total // MIB,
        floor // MIB,
        doing,
    )
    raise HostDiskFull(DISK_FULL_MESSAGE)
