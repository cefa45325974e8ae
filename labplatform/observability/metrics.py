"""Prometheus exposition of the selectors: a collector that reads the
database and Redis at scrape time. Nothing is counted in process memory, so
the numbers are the same from whichever web process Prometheus reaches (no
prometheus_client multiprocess directory to manage)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from labplatform.observability import selectors
from labplatform.observability.heartbeats import heartbeats_read, monitored_queues


class PlatformCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        vms = GaugeMetricFamily(
            "kernellab_vms", "VMs not yet destroyed, by host and state", labels=["host", "state"]
        )
        for host, state, n in selectors.vm_counts():
            vms.add_metric([host, state], n)
        yield vms

        queues = monitored_queues()
        depth = GaugeMetricFamily(
            "kernellab_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"]
        )
        for queue, n in selectors.queue_depths(queues=queues).items():
            depth.add_metric([queue], n)
        yield depth

        age = GaugeMetricFamily(
            "kernellab_worker_heartbeat_age_seconds",
            "Seconds since a worker last took a heartbeat from the queue (absent: never)",
            labels=["queue"],
        )
        for beat in heartbeats_read(queues=queues):
            if beat.age_seconds is not None:
                age.add_metric([beat.queue], beat.age_seconds)
        yield age

        up = GaugeMetricFamily(
            "kernellab_libvirt_host_up", "1 when the host's libvirtd answers", labels=["host"]
        )
        for health in selectors.hosts_health():
            up.add_metric([health.name], 1 if health.ok else 0)
        yield up

        sessions = GaugeMetricFamily(
            "kernellab_console_sessions_open",
            "Console websockets open, by mode (rw: owner, ro: watcher)",
            labels=["mode"],
        )
        for mode, n in selectors.open_console_sessions().items():
            sessions.add_metric([mode], n)
        yield sessions

        grading = HistogramMetricFamily(
            "kernellab_grading_duration_seconds",
            "Time from a grading's start to its result, by kind (check, submit)",
            labels=["kind"],
        )
        for histogram in selectors.grading_histograms():
            buckets = [(f"{bound:g}", float(n)) for bound, n in histogram.buckets]
            buckets.append(("+Inf", float(histogram.count)))
            grading.add_metric([histogram.kind], buckets, histogram.sum_seconds)
        yield grading


def metrics_text() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    return generate_latest(registry)
