"""One way to get a running guest: ``prepare_guest``.

A student's lab (vms.lifecycle), Submit's clean grading guest (vms.sandbox),
the warm pool's entries, the KVM probe and the trial guests of the catalogue
tests and ``manage.py try_exercise`` (exercises.trial) all come from here:
restored from a saved guest when one is at hand (a pool entry: about a
second), otherwise booted cold from the image, then waited for until its
guest agent answers. So every faster path reaches all of them, and passing
in a trial means passing in production.

Each step is timed (``PreparedGuest.steps``) and announced through
``progress``, so that the page and the benchmarks see where the time goes.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from vms import pool
from vms.confinement import guest_limits
from vms.guest_folder import GuestFolder
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.domain import DomainSpec, LabMetadata
from vms.hypervisor.errors import AgentProtocolError
from vms.hypervisor.guest import Guest
from vms.hypervisor.host import Host as HypervisorHost
from vms.hypervisor.overlay import overlay_create
from vms.models import domain_name_for

log = logging.getLogger(__name__)

# A restored guest's agent is up at once; a wait means something is wrong.
RESTORE_AGENT_TIMEOUT = 30.0


@dataclass(frozen=True)
class GuestRole:
    """Who a guest is for, as its domain says it (title, metadata) and, on a
    cold boot, its hostname."""

    title: str
    vm_id: str
    owner: str = ""
    exercise: str = ""
    hostname: str = ""


@dataclass
class PreparedGuest:
    guest: Guest
    agent: GuestAgent
    folder: GuestFolder
    from_pool: bool  # restored from a saved guest rather than booted cold
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(seconds for _step, seconds in self.steps)


def guest_spec(
    profile: pool.Profile, domain_uuid: uuid.UUID, folder: GuestFolder, role: GuestRole
) -> DomainSpec:
    """The domain of a guest of this profile: every guest the platform runs
    is built from here, so that a saved pool entry can be restored as any of them."""
    image = profile.image
    return DomainSpec(
        name=domain_name_for(domain_uuid),
        uuid=str(domain_uuid),
        title=role.title,
        metadata=LabMetadata(
            vm_id=role.vm_id, owner=role.owner, exercise=role.exercise, image=image.hash
        ),
        virt_type=profile.virt_type,
        memory_mib=profile.memory_mib,
        vcpus=profile.vcpus,
        kernel=image.kernel,
        initrd=image.initrd,
        cmdline=image.cmdline,
        extra_cmdline=(f"systemd.hostname={role.hostname}",) if role.hostname else (),
        disk=folder.disk,
        shell_log=folder.shell_log,
        kernel_log=folder.kernel_log,
        limits=guest_limits(),
    )


class _Clock:
    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress = progress
        self.steps: list[tuple[str, float]] = []
        self._step = ""
        self._started = time.monotonic()

    def step(self, name: str, *, announce: str = "") -> None:
        self.done()
        self._step, self._started = name, time.monotonic()
        if announce:
            self.progress(announce)

    def done(self) -> None:
        if self._step:
            self.steps.append((self._step, time.monotonic() - self._started))
            self._step = ""


def prepare_guest(
    hv: HypervisorHost,
    profile: pool.Profile,
    folder: GuestFolder,
    role: GuestRole,
    *,
    boot_timeout: float,
    use_pool: bool = False,
    saved: pool.SavedGuest | None = None,
    persistent: bool = False,
    domain_uuid: uuid.UUID | None = None,
    on_domain: Callable[[uuid.UUID], None] = lambda _uuid: None,
    progress: Callable[[str], None] = lambda _text: None,
) -> PreparedGuest:
    """A running guest in ``folder`` whose agent answers.

    Restored from ``saved``, or from a pool entry of ``profile`` when
    ``use_pool`` (the entry's folder becomes ``folder``), or else booted cold
    from the image: persistent (a lab VM, which Stop saves and Resume starts)
    or transient (gone when destroyed). ``on_domain`` hears the domain's uuid
    before the domain exists, so that a cleanup after a crash knows what to
    look for. On failure the guest is left for the caller's cleanup, which
    finds it by that uuid or by its folder.
    """
    clock = _Clock(progress)
    if saved is None and use_pool:
        clock.step("claim a pool entry")
        saved = pool.claim(profile, folder)
    if saved is not None:
        guest = _restore(hv, profile, folder, role, saved, clock, on_domain)
        from_pool = True
    else:
        guest = _boot_cold(
            hv, profile, folder, role, clock, persistent, domain_uuid, on_domain, boot_timeout
        )
        from_pool = False
    agent = GuestAgent(guest)
    if from_pool:
        clock.step("set the clock")
        _set_clock(agent)
    clock.done()
    prepared = PreparedGuest(guest, agent, folder, from_pool, clock.steps)
    log.info(
        "guest %s ready in %.2fs (%s)",
        guest.name,
        prepared.seconds,
        ", ".join(f"{step} {seconds:.2f}s" for step, seconds in clock.steps),
    )
    return prepared


def _set_clock(agent: GuestAgent) -> None:
    """A restored guest wakes up at the time it was saved. The agent's own
    guest-set-time also runs `hwclock -w`, which waits for the RTC's next second
    (about a second under TCG); the guest's RTC does not matter here."""
    result = agent.exec(["/bin/date", "-u", "-s", f"@{time.time():.6f}"], timeout=10)
    if result.exit_code != 0:
        raise AgentProtocolError(f"setting the clock failed: {result.stderr[-200:]!r}")


def _restore(
    hv: HypervisorHost,
    profile: pool.Profile,
    folder: GuestFolder,
    role: GuestRole,
    saved: pool.SavedGuest,
    clock: _Clock,
    on_domain: Callable[[uuid.UUID], None],
) -> Guest:
    clock.step("restore", announce="Restoring a prepared guest")
    if saved.reusable:  # restored again later: this run writes a copy of its disk
        folder.create()
        shutil.copyfile(saved.folder.disk, folder.disk)
    on_domain(saved.domain_uuid)
    guest = hv.restore(
        str(saved.folder.state_file), guest_spec(profile, saved.domain_uuid, folder, role).to_xml()
    )
    if not saved.reusable:
        saved.folder.state_file.unlink()  # a pool entry is used once
    clock.step("agent answers")
    GuestAgent(guest).wait_ready(RESTORE_AGENT_TIMEOUT)
    return guest


def _boot_cold(
    hv: HypervisorHost,
    profile: pool.Profile,
    folder: GuestFolder,
    role: GuestRole,
    clock: _Clock,
    persistent: bool,
    domain_uuid: uuid.UUID | None,
    on_domain: Callable[[uuid.UUID], None],
    boot_timeout: float,
) -> Guest:
    clock.step("boot", announce="Booting the kernel")
    domain_uuid = domain_uuid or uuid.uuid4()
    on_domain(domain_uuid)
    overlay_create(base=profile.image.disk, overlay=folder.disk)
    xml = guest_spec(profile, domain_uuid, folder, role).to_xml()
    guest = hv.define_and_start(xml) if persistent else hv.create_transient(xml)
    clock.step("agent answers", announce="Waiting for the guest to come up")
    GuestAgent(guest).wait_ready(boot_timeout)
    return guest


def discard(hv: HypervisorHost, domain_uuid: uuid.UUID | None) -> None:
    """Destroy and forget the guest of this uuid, if there is one (idempotent)."""
    if domain_uuid is None:
        return
    guest = hv.find(domain_name_for(domain_uuid))
    if guest is not None:
        guest.destroy()
        guest.undefine()


# -- the warm pool's entries ------------------------------------------------------

POOL_ROLE = GuestRole(title="KernelLab warm pool", vm_id=pool.POOL_VM_ID)


def save_new_guest(
    hv: HypervisorHost,
    profile: pool.Profile,
    building: GuestFolder,
    domain_uuid: uuid.UUID,
    *,
    boot_timeout: float,
) -> None:
    """Boot a guest in ``building``, let it settle at its prompt and save it
    there (its state file); the guest is gone afterwards. A restore must
    keep its uuid."""
    try:
        prepared = prepare_guest(
            hv, profile, building, POOL_ROLE, boot_timeout=boot_timeout, domain_uuid=domain_uuid
        )
        _wait_for_prompt(building, boot_timeout)
        prepared.guest.save(str(building.state_file))  # a transient guest is gone after this
    except BaseException:
        discard(hv, domain_uuid)
        raise


def pool_add_entry(
    hv: HypervisorHost, profile: pool.Profile, *, boot_timeout: float
) -> GuestFolder:
    """One more saved guest in the pool."""
    domain_uuid = uuid.uuid4()
    building = pool.building_folder(profile, domain_uuid)
    building.create()
    try:
        save_new_guest(hv, profile, building, domain_uuid, boot_timeout=boot_timeout)
        return GuestFolder(pool.publish(building, domain_uuid, profile))
    finally:
        building.remove()  # only if publishing did not happen


def pool_fill(hv: HypervisorHost, profile: pool.Profile, *, size: int, boot_timeout: float) -> int:
    """Top the pool up to ``size`` entries; returns how many were added.
    Entries other workers are building count, so concurrent fills do not overshoot."""
    added = 0
    while pool.ready_count(profile) + pool.building_count(profile) < size:
        started = time.monotonic()
        pool_add_entry(hv, profile, boot_timeout=boot_timeout)
        added += 1
        log.info("pool %s: added an entry in %.1fs", profile.key, time.monotonic() - started)
    return added


def _wait_for_prompt(folder: GuestFolder, timeout: float) -> None:
    """The shell has printed its prompt: the guest is idle, ready to be saved."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.shell_log.is_file() and folder.shell_log.read_bytes().rstrip().endswith(b"#"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"no shell prompt in {folder.shell_log} after {timeout:.0f}s")
