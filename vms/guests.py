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

import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections

from vms import pool
from vms.confinement import guest_limits
from vms.guest_folder import GuestFolder
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.domain import DomainSpec, LabMetadata
from vms.hypervisor.errors import AgentProtocolError, HypervisorError
from vms.hypervisor.guest import Guest, GuestState
from vms.hypervisor.host import Host as HypervisorHost
from vms.hypervisor.overlay import overlay_create
from vms.models import domain_name_for

log = logging.getLogger(__name__)

# A restored guest's agent is up at once; a wait means something is wrong.
RESTORE_AGENT_TIMEOUT = 30.0

# What ``progress`` hears while a guest boots cold: the steps that take the
# host's CPU for a while (the warm pool's refills yield to a Start in them).
BOOTING_THE_KERNEL = "Booting the kernel"
WAITING_FOR_THE_GUEST = "Waiting for the guest to come up"
COLD_BOOT_STEPS = (BOOTING_THE_KERNEL, WAITING_FOR_THE_GUEST)


@dataclass(frozen=True)
class GuestRole:
    """Who a guest is for, as its domain says it (title, metadata) and, on a
    cold boot, its hostname."""

    title: str
    vm_id: str
    owner: str = ""
    exercise: str = ""
    hostname: str = ""
    grading: bool = False  # a Submit's clean guest: it yields the CPU to labs


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
        limits=guest_limits(grading=role.grading),
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
        clock.step("clock and hostname")
        _wake(agent, role.hostname)
    clock.done()
    prepared = PreparedGuest(guest, agent, folder, from_pool, clock.steps)
    log.info(
        "guest %s ready in %.2fs (%s)",
        guest.name,
        prepared.seconds,
        ", ".join(f"{step} {seconds:.2f}s" for step, seconds in clock.steps),
    )
    return prepared


# Run in a restored guest: it was saved as "kernellab" with a root shell idle at
# its prompt, so give it its role's hostname and press Enter on that shell (an
# empty line typed into hvc0, TIOCSTI): its next prompt reads the new hostname
# (the image's /etc/profile.d/kernellab-prompt.sh), and shows in the console at
# once, with no getty and login to start again.
RENAME = (
    'hostname "$2" && echo "$2" > /etc/hostname && '
    'perl -e \'open(my $t, "<", "/dev/hvc0") or die $!; my $c = "\\n"; '
    "ioctl($t, 0x5412, $c) or die $!'"
)


def _wake(agent: GuestAgent, hostname: str) -> None:
    """A restored guest wakes up at the time it was saved, named as the pool's
    guests are. One agent exec (each is a round trip and a process in the
    guest, about 0.4 s under TCG) sets its clock and, when its role has a
    hostname, names it. Not the agent's own guest-set-time: that also runs
    `hwclock -w`, which waits for the RTC's next second (about a second under
    TCG); the guest's RTC does not matter here."""
    script = '/bin/date -u -s "@$1" > /dev/null'
    if hostname:
        script += " && " + RENAME
    result = agent.exec(
        ["/bin/sh", "-c", script, "wake", f"{time.time():.6f}", hostname], timeout=30
    )
    if result.exit_code != 0:
        raise AgentProtocolError(
            f"setting the restored guest's clock and hostname failed: {result.stderr[-300:]!r}"
        )


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
    clock.step("boot", announce=BOOTING_THE_KERNEL)
    domain_uuid = domain_uuid or uuid.uuid4()
    on_domain(domain_uuid)
    overlay_create(base=profile.image.disk, overlay=folder.disk)
    xml = guest_spec(profile, domain_uuid, folder, role).to_xml()
    guest = hv.define_and_start(xml) if persistent else hv.create_transient(xml)
    clock.step("agent answers", announce=WAITING_FOR_THE_GUEST)
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

# Whether a student waits for a cold boot on this host (vms.pool_priority): a
# refill then begins no new entry, and the guest of one under way is paused.
StudentsWaiting = Callable[[], bool]

# A refill's guest is paused at most this long in all, then carries on: the
# pool still fills on a host that never goes quiet, and the housekeeping slot
# it holds is not held for ever.
POOL_MAX_PAUSE_SECONDS = 300.0
# How often a refill under way asks whether students wait.
POOL_YIELD_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class PoolFill:
    added: int  # entries booted, saved and published
    yielded: bool = False  # stopped short of full: students were waiting (try again later)


class YieldToStudents:
    """While a pool entry boots, pause its guest whenever ``students_booting()``
    says so, and let it run again when it does not (or once it has been paused
    ``max_pause`` seconds in all). A paused guest takes no CPU, so a student's
    cold boot has the host's cores to itself.

    Meanwhile the building folder's mtime is kept fresh (pool.building_alive),
    so the reaper never takes a long-paused build for one whose worker died.
    On exit the guest runs again: it is saved only then, since a guest saved
    while paused would be restored paused."""

    def __init__(
        self,
        hv: HypervisorHost,
        domain_uuid: uuid.UUID,
        building: GuestFolder,
        students_booting: StudentsWaiting,
        *,
        poll: float = POOL_YIELD_POLL_SECONDS,
        max_pause: float = POOL_MAX_PAUSE_SECONDS,
    ) -> None:
        self._hv, self._name, self._building = hv, domain_name_for(domain_uuid), building
        self._students_booting = students_booting
        self._poll, self._max_pause = poll, max_pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pool-yield-{domain_uuid}")
        self._paused_at: float | None = None
        self.paused_seconds = 0.0
        self.pauses = 0

    def __enter__(self) -> YieldToStudents:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while True:
                try:
                    self._step()
                except HypervisorError as exc:  # the boot's own calls meet it too, and fail
                    log.warning("pool: watching %s: %s", self._name, exc)
                if self._stop.wait(self._poll):
                    return
        finally:
            try:
                self._carry_on()
            finally:
                connections.close_all()  # this thread's own, if students_booting used them

    def _step(self) -> None:
        pool.building_alive(self._building)
        waiting = self._asked()
        if self._paused_at is None:
            if waiting and self.paused_seconds < self._max_pause:
                self._pause()
        elif not waiting or self._paused_for() >= self._max_pause:
            self._carry_on()

    def _asked(self) -> bool:
        try:
            return self._students_booting()
        except Exception:  # a refill must not stall on a failed count
            log.exception("pool: could not tell whether students wait; carrying on")
            return False

    def _paused_for(self) -> float:
        if self._paused_at is None:
            return self.paused_seconds
        return self.paused_seconds + time.monotonic() - self._paused_at

    def _pause(self) -> None:
        guest = self._hv.find(self._name)
        if guest is None or guest.state() != GuestState.RUNNING:
            return  # not started yet, or already gone: the boot itself reports that
        try:
            guest.pause()
        except HypervisorError as exc:
            log.warning("pool: could not pause %s: %s", self._name, exc)
            return
        self._paused_at = time.monotonic()
        self.pauses += 1
        log.info("pool: %s paused: a student waits for a cold boot", self._name)

    def _carry_on(self) -> None:
        if self._paused_at is None:
            return
        self.paused_seconds = self._paused_for()
        self._paused_at = None
        guest = self._hv.find(self._name)
        if guest is not None and guest.state() == GuestState.PAUSED:
            try:
                guest.unpause()
            except HypervisorError as exc:  # the boot's wait then fails and discards it
                log.warning("pool: could not unpause %s: %s", self._name, exc)
                return
        log.info("pool: %s runs again (paused %.1fs in all)", self._name, self.paused_seconds)


def save_new_guest(
    hv: HypervisorHost,
    profile: pool.Profile,
    building: GuestFolder,
    domain_uuid: uuid.UUID,
    *,
    boot_timeout: float,
    students_booting: StudentsWaiting | None = None,
) -> None:
    """Boot a guest in ``building``, let it settle at its prompt and save it
    there (its state file); the guest is gone afterwards. A restore must
    keep its uuid. With ``students_booting``, the guest yields to them while
    it boots (YieldToStudents), and its waits allow for the pauses."""
    timeout = boot_timeout
    yielding: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if students_booting is not None:
        timeout += POOL_MAX_PAUSE_SECONDS
        yielding = YieldToStudents(hv, domain_uuid, building, students_booting)
    try:
        with yielding:  # on leaving, the guest runs again: only then is it saved
            prepared = prepare_guest(
                hv, profile, building, POOL_ROLE, boot_timeout=timeout, domain_uuid=domain_uuid
            )
            _wait_for_prompt(building, timeout)
        prepared.guest.save(str(building.state_file))  # a transient guest is gone after this
    except BaseException:
        discard(hv, domain_uuid)
        raise


def pool_add_entry(
    hv: HypervisorHost,
    profile: pool.Profile,
    *,
    boot_timeout: float,
    students_booting: StudentsWaiting | None = None,
) -> GuestFolder:
    """One more saved guest in the pool."""
    domain_uuid = uuid.uuid4()
    building = pool.building_folder(profile, domain_uuid)
    building.create()
    try:
        save_new_guest(
            hv,
            profile,
            building,
            domain_uuid,
            boot_timeout=boot_timeout,
            students_booting=students_booting,
        )
        return GuestFolder(pool.publish(building, domain_uuid, profile))
    finally:
        building.remove()  # only if publishing did not happen


def pool_fill(
    hv: HypervisorHost,
    profile: pool.Profile,
    *,
    size: int,
    boot_timeout: float,
    students_waiting: StudentsWaiting | None = None,
    students_booting: StudentsWaiting | None = None,
) -> PoolFill:
    """Top the pool up to ``size`` entries. Students come first: while
    ``students_waiting()`` says so, no new entry is begun (the result says the
    fill yielded, for the caller to try again later), and while
    ``students_booting()`` does, the one under way is paused. Entries other
    workers are building count, so concurrent fills do not overshoot."""
    added = 0
    while pool.ready_count(profile) + pool.building_count(profile) < size:
        if students_waiting is not None and students_waiting():
            log.info("pool %s: a student waits for a cold boot; refilling later", profile.key)
            return PoolFill(added, yielded=True)
        started = time.monotonic()
        pool_add_entry(hv, profile, boot_timeout=boot_timeout, students_booting=students_booting)
        added += 1
        log.info("pool %s: added an entry in %.1fs", profile.key, time.monotonic() - started)
    return PoolFill(added)


def _wait_for_prompt(folder: GuestFolder, timeout: float) -> None:
    """The shell has printed its prompt: the guest is idle, ready to be saved."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder.shell_log.is_file() and folder.shell_log.read_bytes().rstrip().endswith(b"#"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"no shell prompt in {folder.shell_log} after {timeout:.0f}s")
