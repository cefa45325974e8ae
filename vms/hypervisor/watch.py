"""Lifecycle events of one libvirt host, for noticing guest kernel panics
within a second instead of at the reaper's next round.

libvirt calls back on its event thread; the callback only queues the domain's
uuid, and the caller's handler runs on the watcher's own thread, so a slow
database never stalls libvirt's event loop. When libvirtd goes away (a
restart, an upgrade) the watcher reconnects with backoff and calls
on_connect, so that whatever happened meanwhile is caught up by a full scan.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

import libvirt

from vms.hypervisor.host import ensure_event_loop

log = logging.getLogger(__name__)


def is_panic_event(event: int, detail: int) -> bool:
    """pvpanic reports CRASHED; with on_crash=destroy libvirt then stops the
    guest with the detail CRASHED. Either one means the kernel panicked."""
    if event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
        return True
    return (
        event == libvirt.VIR_DOMAIN_EVENT_STOPPED
        and detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED
    )


class PanicWatch:
    def __init__(
        self,
        uri: str,
        *,
        on_panic: Callable[[str], None],
        on_connect: Callable[[], None] = lambda: None,
        max_backoff: float = 30.0,
    ) -> None:
        self.uri = uri
        self.on_panic = on_panic
        self.on_connect = on_connect
        self.max_backoff = max_backoff
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self._panics: queue.Queue[str] = queue.Queue()
        self._closed = threading.Event()

    def _lifecycle(
        self,
        _conn: libvirt.virConnect,
        domain: libvirt.virDomain,
        event: int,
        detail: int,
        _o: object,
    ) -> None:
        if is_panic_event(event, detail):
            self._panics.put(domain.UUIDString())

    def _on_close(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        log.warning("panic watch: connection to %s closed (reason %s)", self.uri, reason)
        self._closed.set()

    def run(self) -> None:
        """Until stop(): connect, watch, reconnect."""
        ensure_event_loop()
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                log.warning("panic watch: cannot connect to %s: %s", self.uri, exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = 1.0
            self._closed.clear()
            try:
                conn.setKeepAlive(5, 3)
                conn.registerCloseCallback(self._on_close, None)
                callback = conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None
                )
                self.connected.set()
                self._safely(self.on_connect)
                while not (self.stopping.is_set() or self._closed.is_set()):
                    self._drain(timeout=0.5)
                self._drain(timeout=0)
                if not self._closed.is_set():
                    conn.domainEventDeregisterAny(callback)
            except libvirt.libvirtError as exc:
                log.warning("panic watch on %s: %s", self.uri, exc)
            finally:
                self.connected.clear()
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()

    def _drain(self, timeout: float) -> None:
        try:
            domain_uuid = (
                self._panics.get(timeout=timeout) if timeout else self._panics.get_nowait()
            )
        except queue.Empty:
            return
        self._safely(lambda: self.on_panic(domain_uuid))

    def _safely(self, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:  # one bad event must not end the watch
            log.exception("panic watch on %s: handler failed", self.uri)

    def stop(self) -> None:
        self.stopping.set()
