"""A student's Start comes before the warm pool's refills.

Two cores boot one guest at about full speed; a refill booting beside a
Start's cold boot makes the student wait for both (a burst of 20 Starts was
slower with the pool on than off). So a refill yields while a Start on its
host waits for a cold boot: it begins no new entry (and tries again a few
seconds later, vms.lifecycle.pool_fill), and the guest of an entry under way
is paused until the Starts are through (vms.guests.YieldToStudents).

A Start waits for a cold boot when it is booting one now, or when it waits
for a worker and the pool's ready entries will not go round the Starts
waiting. A Start being restored from the pool is quick and does not count.
"""

from __future__ import annotations

from vms import pool
from vms.guests import COLD_BOOT_STEPS
from vms.models import Host, LabVM, VMKind, VMState


def refill_must_yield(*, waiting: int, booting_cold: int, ready: int) -> bool:
    """``waiting``: Starts not yet taken by a worker; ``booting_cold``: Starts
    (and Resets) booting cold now; ``ready``: entries the pool can hand out."""
    return booting_cold > 0 or waiting > ready


def students_wait_for_a_cold_boot(*, host: Host, profile: pool.Profile) -> bool:
    labs = LabVM.objects.filter(host=host, kind=VMKind.LAB)
    waiting = labs.filter(state=VMState.REQUESTED).count()
    booting_cold = labs.filter(
        state__in=(VMState.PROVISIONING, VMState.RESETTING), progress__in=COLD_BOOT_STEPS
    ).count()
    return refill_must_yield(
        waiting=waiting, booting_cold=booting_cold, ready=pool.ready_count(profile)
    )
