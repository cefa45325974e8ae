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

Only a cold boot under way pauses a refill's guest: a Start still queued may
be waiting for the very worker that runs the refill (one worker taking every
queue of a host, as the tests' and small installs' do), and pausing for it
would hold both until the pause limit. A queued Start only keeps the refill
from beginning its next entry.
"""

from __future__ import annotations

from django.db.models import QuerySet

from vms import pool
from vms.guests import COLD_BOOT_STEPS
from vms.models import Host, LabVM, VMKind, VMState


def refill_must_yield(*, waiting: int, booting_cold: int, ready: int) -> bool:
    """``waiting``: Starts not yet taken by a worker; ``booting_cold``: Starts
    (and Resets) booting cold now; ``ready``: entries the pool can hand out."""
    return booting_cold > 0 or waiting > ready


def students_wait_for_a_cold_boot(*, host: Host, profile: pool.Profile) -> bool:
    """Whether a refill must not begin a new entry now."""
    waiting = _labs(host).filter(state=VMState.REQUESTED).count()
    return refill_must_yield(
        waiting=waiting, booting_cold=_booting_cold(host), ready=pool.ready_count(profile)
    )


def students_boot_cold(*, host: Host) -> bool:
    """Whether a refill's guest under way must pause now: a Start (or Reset)
    on the host is in its cold boot."""
    return _booting_cold(host) > 0


def _labs(host: Host) -> QuerySet[LabVM]:
    return LabVM.objects.filter(host=host, kind=VMKind.LAB)


def _booting_cold(host: Host) -> int:
    return (
        _labs(host)
        .filter(state__in=(VMState.PROVISIONING, VMState.RESETTING), progress__in=COLD_BOOT_STEPS)
        .count()
    )
