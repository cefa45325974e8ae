"""ConsoleHold's edges against libvirt's test:///default driver (which runs no
QEMU and has no ptys). The hold itself, on real guests:
tests/integration/test_console_restore.py."""

from __future__ import annotations

import uuid

from tests.unit.test_domain_xml import spec
from vms.hypervisor.console import ConsoleHold
from vms.hypervisor.domain import SHELL_CONSOLE
from vms.hypervisor.host import Host


def test_a_guest_without_a_pty_console_is_not_held() -> None:
    host = Host("test:///default")
    domain = spec(name=f"hold-{uuid.uuid4().hex[:8]}", uuid=str(uuid.uuid4()))
    guest = host.define_and_start(domain.to_xml())
    try:
        hold = ConsoleHold(host, guest.uuid, SHELL_CONSOLE, seconds=30).start()
        assert hold.ended.wait(5), "a hold that can hold nothing ends at once"
        assert not hold.opened.is_set()
        assert hold.end_reason == "the console is not a pty"
    finally:
        guest.destroy()
        guest.undefine()
        host.close()


def test_a_guest_that_never_appears_is_given_up_at_the_deadline() -> None:
    host = Host("test:///default")
    try:
        hold = ConsoleHold(host, str(uuid.uuid4()), SHELL_CONSOLE, seconds=0.2).start()
        assert hold.ended.wait(5)
        assert hold.end_reason == "the domain's console did not appear in time"
    finally:
        host.close()
