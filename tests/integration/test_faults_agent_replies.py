"""The fault-and-abuse suite: a guest agent that answers very slowly, then
one that answers with a huge reply (the student is root in the guest and
replaces qemu-ga with a program of their own; the garbage-answering one is
tests/integration/test_faults.py, the call-level cases with a scripted
libvirt are tests/unit/test_faults_agent.py).

Defined outcome, on one real guest: every agent call ends with a clear error
within its timeout; a Check ends graded or with a reason that names the
guest, within its time limit; a huge reply grows neither libvirtd nor this
process by more than a bounded amount; the student's console keeps
answering; Destroy leaves nothing."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from exercises.models import Attempt, AttemptStatus
from tests.conftest import World
from tests.integration.test_console_abuse import destroy, echo_latencies, run
from tests.integration.test_faults import SLOW_PASSING_CHECKER, check_now, version_with_checker
from tests.integration.test_faults_disk import nothing_left_after_the_reaper
from tests.integration.test_vm_lifecycle import agent_of, started
from tests.support.console_client import ConsoleClient
from tests.support.processes import asgi_server_process, rss_mib
from vms.hypervisor.agent import MAX_REPLY_BYTES, GuestAgent
from vms.hypervisor.errors import AgentProtocolError, AgentTimeout, AgentUnavailable
from vms.models import LabVM

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024
CALL_TIMEOUT = 10
CHECK_LIMIT = 12
SLOW_SECONDS = 40  # longer than any one call waits
HUGE_MIB = 64  # eight times the platform's reply cap
LIBVIRTD_PID_FILE = Path("/run/libvirtd.pid")

# Takes the agent's port; answers libvirt's guest-sync at once (so each call
# gets as far as its command), then each command, in a thread of its own (a
# slow reply holds nothing else up), as /run/fake-agent-mode says: "fast" at
# once, "slow" after SLOW_SECONDS, "huge" with a reply of HUGE_MIB MiB. What it did is
# logged to /run/fake-agent.log.
FAKE_AGENT = f"""
import json, os, subprocess, threading, time
subprocess.run(["/usr/bin/systemctl", "stop", "qemu-guest-agent"], check=False)
fd = os.open("/dev/virtio-ports/org.qemu.guest_agent.0", os.O_RDWR)
open("/run/fake-agent.log", "a").write("ready\\n")
lock = threading.Lock()
chunk = b"A" * 1048576

def write_all(data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)

def note(text):
    with open("/run/fake-agent.log", "a") as log:
        log.write(text + "\\n")

def answer(request):
    mode = open("/run/fake-agent-mode").read().strip()
    note(f"{{mode}} {{request.get('execute')}}")
    if mode in ("fast", "slow"):
        time.sleep({SLOW_SECONDS} if mode == "slow" else 0)
        with lock:
            write_all(b'{{"return": {{}}}}\\n')
        return
    sent = 0
    with lock:
        try:
            sent += write_all(b'{{"return": "')
            for _ in range({HUGE_MIB}):
                sent += write_all(chunk)
            sent += write_all(b'"}}\\n')
        except OSError as exc:
            note(f"huge reply cut: {{exc}}")
    note(f"huge-sent {{sent}}")

pending = b""
while True:
    data = os.read(fd, 65536)
    if not data:
        time.sleep(0.05)
        continue
    pending += data
    while b"\\n" in pending:
        line, pending = pending.split(b"\\n", 1)
        line = line[line.find(b"{{"):]
        try:
            request = json.loads(line)
        except ValueError:
            note(f"unparsed {{line[:80]!r}}")
            continue
        if request.get("execute") == "guest-sync":
            note("sync")
            with lock:
                write_all(json.dumps({{"return": request["arguments"]["id"]}}).encode() + b"\\n")
            continue
        threading.Thread(target=answer, args=(request,), daemon=True).start()
"""


def fake_agent_launched(vm: LabVM) -> GuestAgent:
    """The fake, started through the real agent (which it stops), answering fast."""
    agent = agent_of(vm)
    agent.write_file("/run/fake-agent-mode", b"fast")
    agent.write_file("/root/fake_agent.py", FAKE_AGENT.encode())
    agent.command(
        "guest-exec",
        {
            "path": "/usr/bin/systemd-run",
            "arg": ["--unit=fake-agent", "/usr/bin/python3", "/root/fake_agent.py"],
        },
    )
    return GuestAgent(agent.guest, call_timeout=CALL_TIMEOUT)


def answering(agent: GuestAgent) -> None:
    """Once libvirt has reconnected to the port (now the fake's), a call goes through."""
    deadline = time.monotonic() + 30
    while not agent.ping():
        assert time.monotonic() < deadline, "libvirt never reached the fake agent"
        time.sleep(0.2)


def call_failed(agent: GuestAgent) -> tuple[float, str]:
    """Seconds an agent call took to fail, and its error."""
    began = time.monotonic()
    try:
        answer = agent.command("guest-info")
    except (AgentUnavailable, AgentTimeout, AgentProtocolError) as exc:
        return time.monotonic() - began, str(exc)
    raise AssertionError(f"the call succeeded: {str(answer)[:200]!r}")


def libvirtd_rss() -> float:
    return rss_mib(int(LIBVIRTD_PID_FILE.read_text().split()[0]))


def assert_check_ended_in_time(attempt: Attempt, seconds: float) -> None:
    assert attempt.status in (AttemptStatus.TIMED_OUT, AttemptStatus.CHECKER_ERROR), (
        attempt.status,
        attempt.reason,
    )
    assert "guest" in attempt.reason
    assert seconds < CHECK_LIMIT + 30, "the Check outlived its checker's time limit"


async def test_a_slow_then_huge_answering_guest_agent_gives_clear_errors_in_time(
    world: World, vm_dir: Path, tmp_path: Path, no_enqueue: Any
) -> None:
    await sync_to_async(version_with_checker)(
        world, SLOW_PASSING_CHECKER, limit_seconds=CHECK_LIMIT
    )
    vm = await sync_to_async(started)(world)
    env = {"VM_DIR": str(vm_dir), "CONSOLE_RECORDING_DIR": str(tmp_path / "rec")}
    try:
        with asgi_server_process(tmp_path, **env) as (url, _server):
            term = await ConsoleClient.open(url, vm, world.alice)
            await run(term, "echo ready-$((1+1))", b"ready-2")
            agent = await sync_to_async(fake_agent_launched)(vm)
            await run(
                term,
                "until grep -qs ready /run/fake-agent.log; do sleep 0.2; done; echo fake-$((5+5))",
                b"fake-10",
            )
            await sync_to_async(answering)(agent)
            # The student makes it slow, at the prompt.
            await run(term, "echo slow > /run/fake-agent-mode; echo mode-$((2+3))", b"mode-5")
            slow_call, slow_error = await sync_to_async(call_failed)(agent)
            slow_check, slow_check_seconds = await sync_to_async(check_now)(world)
            slow_echo = await echo_latencies(term, 10)

            # The student switches the fake to huge replies, at the prompt.
            await run(term, "echo huge > /run/fake-agent-mode; echo mode-$((3+3))", b"mode-6")
            libvirtd_before, mine_before = libvirtd_rss(), rss_mib(os.getpid())
            huge_call, huge_error = await sync_to_async(call_failed)(agent)
            libvirtd_after, mine_after = libvirtd_rss(), rss_mib(os.getpid())
            huge_check, huge_check_seconds = await sync_to_async(check_now)(world)
            await run(term, "echo alive-$((2+3))", b"alive-5")
            huge_echo = await echo_latencies(term, 10)
            mark = len(term.output)
            await run(term, "sort /run/fake-agent.log | uniq -c; echo log-$((4+4))", b"log-8")
            fake_log = bytes(term.output[mark:]).decode(errors="replace")
            await term.close()
        print(
            f"\nslow agent ({SLOW_SECONDS}s a reply): a call failed in {slow_call:.1f}s "
            f"({slow_error}); Check -> {slow_check.status} in {slow_check_seconds:.1f}s "
            f"{slow_check.reason[:160]!r}; console echo p50 "
            f"{statistics.median(slow_echo) * 1000:.1f} ms"
            f"\nhuge agent reply ({HUGE_MIB} MiB): a call failed in {huge_call:.1f}s "
            f"({huge_error}); libvirtd RSS {libvirtd_before:.0f} -> {libvirtd_after:.0f} MiB, "
            f"test process {mine_before:.0f} -> {mine_after:.0f} MiB; Check -> "
            f"{huge_check.status} in {huge_check_seconds:.1f}s {huge_check.reason[:160]!r}; "
            f"console echo p50 {statistics.median(huge_echo) * 1000:.1f} ms\n"
            f"the fake agent's log:\n{fake_log}"
        )
        assert "slow guest-" in fake_log, "no call reached the slow fake's command"
        assert "huge guest-" in fake_log, "no call reached the huge fake's command"
        assert slow_call < CALL_TIMEOUT + 5, "a call to a slow agent outlived its timeout"
        assert_check_ended_in_time(slow_check, slow_check_seconds)
        assert huge_call < CALL_TIMEOUT + 5, "a call answered hugely outlived its timeout"
        assert libvirtd_after - libvirtd_before < HUGE_MIB / 2, "libvirtd holds the huge reply"
        assert mine_after - mine_before < 4 * MAX_REPLY_BYTES / MIB
        assert_check_ended_in_time(huge_check, huge_check_seconds)
        assert max(slow_echo + huge_echo) < 2.0, "the console suffers from the agent"
    finally:
        await destroy(await sync_to_async(LabVM.objects.get)(pk=vm.pk))
    await sync_to_async(nothing_left_after_the_reaper)(vm, vm_dir)
