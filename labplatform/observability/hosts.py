"""Whether each libvirt host answers: a cheap, bounded, cached probe.

Load balancers poll /healthz every few seconds, and a remote libvirtd that
hangs must not hang them: each URI has one probe thread; a request waits for
it at most HEALTH_HOST_TIMEOUT_SECONDS, and an answer is reused for
HEALTH_HOST_CACHE_SECONDS. A probe still stuck on a hung host is not started
twice; the host reads as not answering until it returns.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from django.conf import settings

from vms.hypervisor.errors import HypervisorError


@dataclass(frozen=True)
class HostHealth:
    name: str
    ok: bool
    message: str


@dataclass
class _Probe:
    executor: ThreadPoolExecutor
    lock: threading.Lock = field(default_factory=threading.Lock)
    future: Future[str] | None = None
    answer: tuple[bool, str] | None = None
    answered_at: float = 0.0


_probes: dict[str, _Probe] = {}
_probes_lock = threading.Lock()


def _ping(uri: str) -> str:
    from vms.lifecycle import hypervisor  # the process's one connection per URI

    return hypervisor(uri).ping()


def _probe_for(uri: str) -> _Probe:
    with _probes_lock:
        if uri not in _probes:
            _probes[uri] = _Probe(
                executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-health")
            )
        return _probes[uri]


def host_health(*, name: str, uri: str) -> HostHealth:
    probe = _probe_for(uri)
    with probe.lock:
        fresh = time.monotonic() - probe.answered_at < settings.HEALTH_HOST_CACHE_SECONDS
        if probe.answer is not None and fresh:
            return HostHealth(name, *probe.answer)
        if probe.future is None or probe.future.done():
            probe.future = probe.executor.submit(_ping, uri)
        future = probe.future
    timeout = settings.HEALTH_HOST_TIMEOUT_SECONDS
    try:
        answer = (True, future.result(timeout=timeout))
    except FutureTimeout:
        answer = (False, f"libvirt at {uri} did not answer within {timeout:g} s")
    except HypervisorError as exc:
        answer = (False, exc.message)
    with probe.lock:
        probe.answer, probe.answered_at = answer, time.monotonic()
    return HostHealth(name, *answer)


def host_health_forget() -> None:
    """Drop cached answers (tests)."""
    with _probes_lock:
        for probe in _probes.values():
            with probe.lock:
                probe.answer = None
