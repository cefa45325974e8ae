"""Watch this worker's hypervisor host for guest kernel panics (runs beside
the worker: Procfile `watcher`, compose service `watcher`)."""

from __future__ import annotations

import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from vms import reaper
from vms.crashes import vm_crashed
from vms.hypervisor.watch import PanicWatch
from vms.models import Host

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Mark lab VMs whose guest kernel panics CRASHED, within a second."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=settings.KERNELLAB_HOST_NAME, help="host name")
        parser.add_argument(
            "--no-reconcile",
            action="store_true",
            help="do not run the reaper's reconcile on (re)connecting: for tests sharing a "
            "libvirtd with other databases, whose domains it would take for orphans",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host = Host.objects.filter(name=options["host"]).first()
        if host is None:
            raise CommandError(f"no host named {options['host']!r} (see manage.py seed_demo)")
        watch = PanicWatch(
            host.uri,
            on_panic=lambda domain_uuid: _crashed(domain_uuid),
            # Whatever crashed while we were not watching (or libvirtd restarted).
            on_connect=(lambda: None)
            if options["no_reconcile"]
            else lambda: reaper.reconcile(host),
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: watch.stop())
        self.stdout.write(f"watching {host.uri} for guest kernel panics")
        watch.run()


def _crashed(domain_uuid: str) -> None:
    vm = vm_crashed(domain_uuid=domain_uuid)
    if vm is not None:
        log.warning("lab VM %s of %s crashed", vm.id, vm.owner.username)
