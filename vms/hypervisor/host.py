"""One libvirt connection per hypervisor host, reopened when it dies.

libvirtd may restart under us (an upgrade, a crash): guests keep running, and
the next call on a dead connection transparently opens a new one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import libvirt

from vms.hypervisor.domain import log_files
from vms.hypervisor.errors import GuestNotFound, HostUnavailable, HypervisorError
from vms.hypervisor.guest import Guest

log = logging.getLogger(__name__)

_event_loop_lock = threading.Lock()
_event_loop_started = False


def ensure_event_loop() -> None:
    """libvirt needs an event loop for keepalives, close callbacks and lifecycle
    events. Outside asyncio (workers, management commands) run libvirt's default
    implementation in a daemon thread, once per process."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class Host:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Host({self.uri!r})"

    @property
    def conn(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except libvirt.libvirtError:
                    pass
                log.warning("libvirt connection to %s lost; reconnecting", self.uri)
                self._close_quietly()
            self._conn = self._open()
            return self._conn

    def _open(self) -> libvirt.virConnect:
        if not self.uri.startswith("test:"):
            ensure_event_loop()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise HostUnavailable(f"cannot connect to libvirt at {self.uri}: {exc}") from exc
        if not self.uri.startswith("test:"):
            # Notice a dead daemon within ~15 s instead of on the next call's timeout.
            conn.setKeepAlive(5, 3)
        return conn

    def _close_quietly(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def ping(self) -> str:
        """One round trip to libvirtd (health checks): its version, or
        HostUnavailable saying why not."""
        try:
            version = int(self.conn.getLibVersion())
        except libvirt.libvirtError as exc:
            raise HostUnavailable(f"libvirt at {self.uri} did not answer: {exc}") from exc
        major, rest = divmod(version, 1_000_000)
        return f"libvirt {major}.{rest // 1000}.{rest % 1000}"

    def _logs_create(self, xml: str) -> None:
        """virtlogd (root) creates a log file it does not find as root's, mode
        0600, that the site's processes could not read: they run as the user
        kernellab (./kernellab serve). One that exists it appends to, keeping
        its owner; so each is created first, by this process. (libvirt's test
        driver writes no logs.)"""
        if self.uri.startswith("test:"):
            return
        for path in log_files(xml):
            if path.parent.is_dir():  # if not, libvirt says what is missing
                path.touch(mode=0o600, exist_ok=True)

    def define_and_start(self, xml: str) -> Guest:
        self._logs_create(xml)
        try:
            domain = self.conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"libvirt refused the domain definition: {exc}") from exc
        guest = Guest(domain)
        guest.start()
        return guest

    def create_transient(self, xml: str) -> Guest:
        """Start a guest that libvirt forgets when it stops (warm-pool guests)."""
        self._logs_create(xml)
        try:
            guest = Guest(self.conn.createXML(xml, 0))
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"libvirt could not start the guest: {exc}") from exc
        guest.enforce_limits()
        return guest

    def restore(self, state_file: str, xml: str) -> Guest:
        """Start a guest from a saved memory image and make it persistent.

        ``xml`` may move the disk and logs and change the metadata, but must
        keep the saved name and uuid: libvirt refuses anything else.
        """
        self._logs_create(xml)
        try:
            self.conn.restoreFlags(state_file, xml, libvirt.VIR_DOMAIN_SAVE_RUNNING)
            domain = self.conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"restoring from {state_file} failed: {exc}") from exc
        guest = Guest(domain)
        guest.enforce_limits()
        return guest

    def lookup(self, name: str) -> Guest:
        try:
            return Guest(self.conn.lookupByName(name))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise GuestNotFound(f"no domain named {name}") from exc
            raise HypervisorError(f"looking up {name} failed: {exc}") from exc

    def lookup_uuid(self, domain_uuid: str) -> Guest:
        try:
            return Guest(self.conn.lookupByUUIDString(domain_uuid))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise GuestNotFound(f"no domain {domain_uuid}") from exc
            raise HypervisorError(f"looking up {domain_uuid} failed: {exc}") from exc

    def find(self, name: str) -> Guest | None:
        try:
            return self.lookup(name)
        except GuestNotFound:
            return None

    def guests(self) -> Iterator[Guest]:
        try:
            domains = self.conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"listing the domains of {self.uri} failed: {exc}") from exc
        for domain in domains:
            yield Guest(domain)
