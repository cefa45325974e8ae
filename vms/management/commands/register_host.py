"""manage.py register_host [NAME] --uri URI [--max-vms N]: declare the hypervisor
host this machine is (run by each host's set-up: compose service host-setup)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug

from vms.hosts import host_register


class Command(BaseCommand):
    help = "Create or update a hypervisor host (its queues are host.<name>.*)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", nargs="?", default=settings.KERNELLAB_HOST_NAME)
        parser.add_argument(
            "--uri",
            required=True,
            help="how web nodes reach its libvirtd, e.g. qemu+tls://h2/system",
        )
        parser.add_argument("--max-vms", type=int, default=None, help="running guests at most")

    def handle(self, *args: Any, name: str, uri: str, max_vms: int | None, **options: Any) -> None:
        try:
            validate_slug(name)
        except ValidationError as exc:
            raise CommandError(f"host name {name!r}: letters, digits, - and _ only") from exc
        if max_vms is not None and max_vms < 1:
            raise CommandError("--max-vms must be at least 1")
        host, changed = host_register(name=name, uri=uri, max_vms=max_vms)
        state = "registered" if changed else "unchanged"
        self.stdout.write(f"host {host.name}: {state} ({host.uri}, at most {host.max_vms} guests)")
