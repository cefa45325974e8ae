"""A student's Start comes before the warm pool's refills, with real QEMU
guests: a refill with a Start waiting boots nothing and comes back later; a
refill's guest already booting is paused while a Start waits for a cold boot
(libvirt's own state says so), boots on when the Start is through, and is
saved running: its entry restores to a guest whose agent answers.

The decision itself and the pausing's edge cases: tests/unit/test_pool_priority.py."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import LazySettings
from django.db import connections

from tests.conftest import World
from vms import guests, lifecycle, pool, services
from vms.guest_folder import GuestFolder
from vms.hypervisor.guest import Guest, GuestState
from vms.images import BuiltImage
from vms.models import LabVM, VMState, domain_name_for

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db(transaction=True)]

URI = "qemu:///system"


def wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout:.0f}s"
        time.sleep(0.1)


def building_guest(profile: pool.Profile) -> Guest | None:
    """The guest of the entry being built, once its domain exists."""
    if not profile.directory.is_dir():
        return None
    for entry in profile.directory.glob("*.tmp"):
        guest = lifecycle.hypervisor(URI).find(domain_name_for(uuid.UUID(entry.name[:-4])))
        if guest is not None:
            return guest
    return None


def test_a_refill_with_a_start_waiting_boots_nothing_and_comes_back(
    world: World, lab_image: BuiltImage, vm_dir: Path, settings: LazySettings, no_enqueue: Any
) -> None:
    settings.VM_POOL_SIZE = 1
    services.lab_start(user=world.alice, assignment=world.hello)  # queued, not taken yet
    assert lifecycle.pool_fill("local", 1024, 1) == 0
    profile = lifecycle.profile_for(URI, lab_image, 1024, 1)
    assert pool.ready_count(profile) + pool.building_count(profile) == 0
    retries = [c for c in no_enqueue.call_args_list if c.args[0] == ("local", 1024, 1)]
    assert [c.kwargs["countdown"] for c in retries] == [lifecycle.POOL_RETRY_SECONDS]


def test_a_refill_booting_is_paused_while_a_start_waits_and_saved_running_after(
    world: World, lab_image: BuiltImage, vm_dir: Path, settings: LazySettings, no_enqueue: Any
) -> None:
    settings.VM_POOL_SIZE = 1
    profile = lifecycle.profile_for(URI, lab_image, 1024, 1)
    added: list[int] = []

    def refill() -> None:  # as the housekeeping worker runs it, in a thread of its own
        try:
            added.append(lifecycle.pool_fill("local", 1024, 1))
        finally:
            connections.close_all()

    fill = threading.Thread(target=refill)
    fill.start()
    try:
        wait_until(lambda: building_guest(profile) is not None, "booting", 60)
        guest = building_guest(profile)
        assert guest is not None
        vm = services.lab_start(user=world.alice, assignment=world.hello)
        # Queued, it only keeps the refill from beginning another entry (the
        # worker it waits for may be the refill's own): no pause yet.
        time.sleep(2)
        assert guest.state() == GuestState.RUNNING
        # A lab worker takes it and boots it cold.
        LabVM.objects.filter(pk=vm.pk).update(
            state=VMState.PROVISIONING, progress=guests.BOOTING_THE_KERNEL
        )
        wait_until(lambda: guest.state() == GuestState.PAUSED, "paused for the Start", 10)
        time.sleep(2)
        assert guest.state() == GuestState.PAUSED, "stays paused while the Start waits"
        # The Start is through (restored, booted: no longer waiting).
        LabVM.objects.filter(pk=vm.pk).update(state=VMState.RUNNING, progress="Ready")
        wait_until(lambda: guest.state() != GuestState.PAUSED, "booting again", 10)
    finally:
        fill.join(timeout=300)
    assert added == [1]
    assert pool.ready_count(profile) == 1
    # Saved running: the entry restores to a guest whose agent answers at once.
    folder = GuestFolder(vm_dir / "restored")
    prepared = guests.prepare_guest(
        lifecycle.hypervisor(URI),
        profile,
        folder,
        guests.GuestRole(title="KernelLab pool test", vm_id=str(uuid.uuid4())),
        boot_timeout=30,
        use_pool=True,
    )
    try:
        assert prepared.from_pool
        assert prepared.guest.state() == GuestState.RUNNING
    finally:
        guests.discard(lifecycle.hypervisor(URI), uuid.UUID(prepared.guest.uuid))
