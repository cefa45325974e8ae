"""Hypervisor hosts as the deployment declares them.

Each hypervisor host runs its own worker and watcher (its compose services,
or its Procfile): they create the guests' files on that host's disk and
drive its libvirtd locally. Web nodes reach the host's libvirtd through the
URI registered here (consoles); placement picks among the enabled hosts.
"""

from __future__ import annotations

import enum
import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from vms.hypervisor.errors import GuestNotFound, HostUnavailable, HypervisorError
from vms.hypervisor.guest import Guest
from vms.hypervisor.host import Host as HypervisorHost
from vms.models import Host, LabVM

log = logging.getLogger(__name__)

# Sent (with host=) when a host is found lost, after its labs are failed:
# whoever had work queued there ends it (exercises: the attempts it was grading).
host_lost = Signal()


@transaction.atomic
def host_register(*, name: str, uri: str, max_vms: int | None = None) -> tuple[Host, bool]:
    """Create the host, or bring its URI (and capacity, when given) up to date.
    Its ``enabled`` flag is the staff's (drain), never changed here. Returns
    the host and whether anything changed."""
    wanted: dict[str, object] = {"uri": uri}
    if max_vms is not None:
        wanted["max_vms"] = max_vms
    host, created = Host.objects.select_for_update().get_or_create(name=name, defaults=wanted)
    if created:
        return host, True
    changed = [field for field, value in wanted.items() if getattr(host, field) != value]
    for field in changed:
        setattr(host, field, wanted[field])
    if changed:
        host.save(update_fields=changed)
    return host, bool(changed)


def guest_is_ours(guest: Guest) -> bool:
    """Whether a KernelLab guest on this libvirtd is this site's: its disks are
    in our VM_DIR. Another site, or another test run, sharing the libvirtd keeps
    its own folder (and its own attempt and VM ids): the reaper and the
    grading clean-up never take its guests for ours."""
    vm_dir = Path(settings.VM_DIR)
    try:
        return any(path.is_relative_to(vm_dir) for path in guest.disk_paths())
    except GuestNotFound:
        return False  # gone meanwhile (any other error: the caller leaves it alone)


def host_drain(*, host: Host) -> bool:
    """No new lab is placed on the host (nor booted there again); running
    labs go on. Returns whether this call changed anything."""
    return _set_enabled(host, False)


def host_undrain(*, host: Host) -> bool:
    return _set_enabled(host, True)


def _set_enabled(host: Host, enabled: bool) -> bool:
    changed = Host.objects.filter(pk=host.pk, enabled=not enabled).update(enabled=enabled)
    host.enabled = enabled
    if changed:
        log.info("host %s: %s", host.name, "taking labs again" if enabled else "drained")
    return bool(changed)


class HostCondition(enum.StrEnum):
    ANSWERS = "answers"
    UNREACHABLE = "unreachable"  # not answering, not yet for long
    LOST = "lost"  # not answering for HOST_LOST_AFTER_SECONDS: its labs failed


def host_lost_message(host: Host) -> str:
    return (
        f"The lab machine that ran this VM (host {host.name}) is unreachable, and the VM "
        "with it. Start the lab again: it gets a fresh VM on another machine."
    )


# A libvirtd that accepts and never answers (hung, or a half-dead machine)
# blocks libvirt's open for good: the check waits this long, then counts it as
# not answering. Beat's fan-out shares its queue with webhook deliveries.
HOST_CHECK_TIMEOUT_SECONDS = 15.0
_pings: dict[str, Future[str]] = {}  # per URI, the last ping started
_pings_lock = threading.Lock()


def _ping(uri: str) -> None:
    """One bounded round trip to the host's libvirtd, on a daemon thread (a
    hung one holds only that thread, and never the process's exit; while it
    hangs, the next checks of that URI start no other). HostUnavailable if
    no answer in time."""
    from vms.lifecycle import hypervisor  # the process's one connection per URI

    with _pings_lock:
        future = _pings.get(uri)
        if future is None or future.done():
            future = _pings[uri] = Future()
            threading.Thread(
                target=_ping_into, args=(hypervisor(uri), future), name="host-check", daemon=True
            ).start()
    try:
        future.result(timeout=HOST_CHECK_TIMEOUT_SECONDS)
    except FutureTimeout:
        raise HostUnavailable(
            f"libvirt at {uri} did not answer within {HOST_CHECK_TIMEOUT_SECONDS:g} s"
        ) from None


def _ping_into(hypervisor: HypervisorHost, future: Future[str]) -> None:
    try:
        future.set_result(hypervisor.ping())
    except BaseException as exc:  # handed to the waiting caller, which raises it
        future.set_exception(exc)


def host_check(*, host: Host, now: datetime | None = None) -> HostCondition:
    """Ask the host's libvirtd, through the URI web nodes use, whether it is
    there. A host that stops answering is marked unreachable (no new lab is
    placed there); one silent for HOST_LOST_AFTER_SECONDS is lost: every
    live lab on it is FAILED with the reason, since its guests and their
    disks are out of reach, and nothing is kept waiting for it. If the host
    comes back, its reaper finds those guests and folders without a live row
    and removes them (vms.reaper.reconcile), and placement uses it again."""
    now = now or timezone.now()
    try:
        _ping(host.uri)
    except HypervisorError as exc:
        return _host_unanswered(host, now, exc.message)
    if Host.objects.filter(pk=host.pk, unreachable_since__isnull=False).update(
        unreachable_since=None
    ):
        log.warning("host %s answers again: labs are placed there again", host.name)
    host.unreachable_since = None
    return HostCondition.ANSWERS


def _host_unanswered(host: Host, now: datetime, why: str) -> HostCondition:
    if Host.objects.filter(pk=host.pk, unreachable_since__isnull=True).update(
        unreachable_since=now
    ):
        log.error("host %s does not answer: %s", host.name, why)
    host.refresh_from_db(fields=["unreachable_since"])
    since = host.unreachable_since or now
    if now - since < timedelta(seconds=settings.HOST_LOST_AFTER_SECONDS):
        return HostCondition.UNREACHABLE
    host_labs_fail(host=host)
    host_lost.send(sender=Host, host=host)  # exercises ends what it was grading
    return HostCondition.LOST


def host_labs_fail(*, host: Host) -> int:
    """Every live VM of a lost host turns FAILED with the reason. Nothing is
    asked of the host (it does not answer); returns how many VMs failed."""
    from vms.events import transition_and_publish
    from vms.models import LIVE_STATES, VMState

    failed = 0
    for vm in LabVM.objects.filter(host=host, state__in=LIVE_STATES).select_related(
        "host", "exercise", "owner"
    ):
        if transition_and_publish(
            vm,
            vm.state,
            VMState.FAILED,
            error_code="host_unreachable",
            error_message=host_lost_message(host),
            progress="Failed",
        ):
            failed += 1
    if failed:
        log.error("host %s is lost: %d lab(s) failed", host.name, failed)
    return failed


def hosts_check_all() -> dict[str, HostCondition]:
    """Every host, from whichever worker runs beat's fan-out: a lost host's
    own workers are gone with it, so another host must notice."""
    return {host.name: host_check(host=host) for host in Host.objects.order_by("name")}
