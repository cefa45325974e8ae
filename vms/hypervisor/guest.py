"""A thin, typed wrapper over one libvirt domain."""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import libvirt

from vms.hypervisor.domain import (
    LIMITS_NS,
    METADATA_NS,
    LabMetadata,
    declared_cpu_shares,
    declared_memory_hard_limit_kib,
)
from vms.hypervisor.errors import GuestNotFound, GuestOperationFailed, HypervisorError

log = logging.getLogger(__name__)

# libvirt's "no limit" for memory parameters (VIR_DOMAIN_MEMORY_PARAM_UNLIMITED, KiB).
MEMORY_UNLIMITED_KIB = 9007199254740991


class GuestState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    SHUTTING_DOWN = "shutting_down"
    OTHER = "other"


_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: GuestState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: GuestState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: GuestState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: GuestState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: GuestState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: GuestState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: GuestState.CRASHED,
}


class Guest:
    def __init__(self, domain: libvirt.virDomain) -> None:
        self.domain = domain

    def __repr__(self) -> str:
        return f"Guest({self.name!r})"

    @property
    def name(self) -> str:
        return str(self.domain.name())

    @property
    def uuid(self) -> str:
        return str(self.domain.UUIDString())

    def state(self) -> GuestState:
        """SHUTOFF also for a transient domain that is gone (destroyed, or
        ended by a guest kernel panic: on_crash is destroy; see ended_by_panic)."""
        try:
            state, _reason = self.domain.state()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return GuestState.SHUTOFF
            raise GuestOperationFailed(f"reading the state of {self.name} failed: {exc}") from exc
        return _STATES.get(state, GuestState.OTHER)

    def ended_by_panic(self) -> bool:
        """Whether the guest's kernel panicked: QEMU's pvpanic device told
        libvirt, which (on_crash is destroy) shut the guest off for it."""
        try:
            state, reason = self.domain.state()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise GuestOperationFailed(f"reading the state of {self.name} failed: {exc}") from exc
        return state == libvirt.VIR_DOMAIN_CRASHED or (
            state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED
        )

    def is_running(self) -> bool:
        return self.state() in (GuestState.RUNNING, GuestState.PAUSED, GuestState.SHUTTING_DOWN)

    def metadata(self) -> LabMetadata | None:
        """Our stamp on the domain, or None for a domain KernelLab did not make.
        Any other failure (libvirtd busy or restarting, the domain gone
        meanwhile) raises: "could not read" must never pass for "not ours",
        or the reaper would take a live guest for a missing one."""
        try:
            text = self.domain.metadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                METADATA_NS,
                libvirt.VIR_DOMAIN_AFFECT_CONFIG
                if self.domain.isPersistent()
                else libvirt.VIR_DOMAIN_AFFECT_LIVE,
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            raise self._failed("reading the metadata", exc) from exc
        return LabMetadata.from_xml(text)

    def has_managed_save(self) -> bool:
        try:
            return bool(self.domain.hasManagedSaveImage(0))
        except libvirt.libvirtError as exc:
            raise self._failed("reading the saved state", exc) from exc

    def _failed(self, what: str, exc: libvirt.libvirtError) -> HypervisorError:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return GuestNotFound(f"{self.name} is gone ({what}): {exc}")
        return GuestOperationFailed(f"{what} of {self.name} failed: {exc}")

    def _call(self, what: str, func: object, *args: object) -> None:
        try:
            func(*args)  # type: ignore[operator]
        except libvirt.libvirtError as exc:
            raise GuestOperationFailed(f"{what} of {self.name} failed: {exc}") from exc

    def start(self) -> None:
        """Boot the guest, or bring it back from its managed save image."""
        self._call("start", self.domain.create)
        self.enforce_limits()

    # -- confinement (vms.hypervisor.domain.GuestLimits) -----------------------------

    def enforce_limits(self) -> None:
        """Apply the memory hard limit and the cpu shares the domain declares
        to its running QEMU (its memory and cpu cgroups), right after it
        starts. A guest that cannot be bounded does not keep running: it is
        destroyed and the start fails. Shares are a weight, not a bound (the
        CPU quota is in the definition): a host that cannot set them keeps
        the guest, and says so."""
        try:
            declared = self._declared_limits()
            if declared is None:
                return  # not one of ours, or made before limits were declared
            hard_limit = declared_memory_hard_limit_kib(declared)
            if hard_limit is not None:
                self._set_memory_hard_limit(hard_limit)
        except HypervisorError:
            self.destroy()
            raise
        shares = declared_cpu_shares(declared)
        if shares is None:
            return
        try:
            self._call(
                "setting the cpu shares",
                self.domain.setSchedulerParametersFlags,
                {"cpu_shares": shares},
                libvirt.VIR_DOMAIN_AFFECT_LIVE,
            )
        except HypervisorError as exc:  # libvirt's test driver has no cpu_shares
            log.warning("%s", exc)

    def _declared_limits(self) -> str | None:
        try:
            return str(
                self.domain.metadata(
                    libvirt.VIR_DOMAIN_METADATA_ELEMENT, LIMITS_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE
                )
            )
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            raise self._failed("reading the declared limits", exc) from exc

    def _declared_memory_hard_limit_kib(self) -> int | None:
        declared = self._declared_limits()
        return None if declared is None else declared_memory_hard_limit_kib(declared)

    def _set_memory_hard_limit(self, kib: int) -> None:
        self._call(
            "setting the memory limit",
            self.domain.setMemoryParameters,
            {"hard_limit": kib},
            libvirt.VIR_DOMAIN_AFFECT_LIVE,
        )

    @contextlib.contextmanager
    def _memory_limit_lifted(self) -> Iterator[None]:
        """A saved image carries the live definition, and libvirt refuses to
        start QEMU from one that has a hard limit where QEMU's locked-memory
        rlimit cannot be raised (see GuestLimits). So the limit is lifted just
        before a save (the guest stops with it) and put back if the save fails;
        the next start applies it again."""
        if self._declared_memory_hard_limit_kib() is None:
            yield
            return
        self._set_memory_hard_limit(MEMORY_UNLIMITED_KIB)
        try:
            yield
        except BaseException:
            if self.is_running():
                self.enforce_limits()
            raise

    def destroy(self) -> None:
        """Pull the plug. Harmless if the guest is already off."""
        if self.state() != GuestState.SHUTOFF:
            try:
                self.domain.destroy()
            except libvirt.libvirtError as exc:
                if self.state() != GuestState.SHUTOFF:
                    raise GuestOperationFailed(f"destroying {self.name} failed: {exc}") from exc

    def shutdown(self, timeout: float) -> bool:
        """Ask the guest to power off (ACPI); pull the plug after ``timeout``.
        True if it shut down by itself."""
        if self.state() == GuestState.SHUTOFF:
            return True
        try:
            self.domain.shutdown()
        except libvirt.libvirtError as exc:
            log.info("graceful shutdown of %s refused (%s); destroying", self.name, exc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state() == GuestState.SHUTOFF:
                return True
            time.sleep(0.2)
        log.warning("%s did not shut down within %ss; destroying", self.name, timeout)
        self.destroy()
        return False

    def managed_save(self) -> None:
        """Save memory to disk and stop: start() later resumes where it was."""
        with self._memory_limit_lifted():
            self._call("managed save", self.domain.managedSave, 0)

    def save(self, path: str) -> None:
        with self._memory_limit_lifted():
            self._call("save", self.domain.save, path)

    def reset(self) -> None:
        self._call("reset", self.domain.reset, 0)

    def pause(self) -> None:
        """Stop its vCPUs where they are (memory kept): it takes no CPU until unpause()."""
        self._call("pause", self.domain.suspend)

    def unpause(self) -> None:
        self._call("unpause", self.domain.resume)

    def undefine(self) -> None:
        try:
            self.domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise GuestOperationFailed(f"undefining {self.name} failed: {exc}") from exc

    def xml(self) -> str:
        try:
            return str(self.domain.XMLDesc(0))
        except libvirt.libvirtError as exc:
            raise self._failed("reading the definition", exc) from exc

    def disk_paths(self) -> list[Path]:
        """The files behind its disks, as its definition names them."""
        root = ElementTree.fromstring(self.xml())  # noqa: S314 - libvirt's own definition
        return [
            Path(source.attrib["file"])
            for source in root.iterfind("./devices/disk/source")
            if "file" in source.attrib
        ]
