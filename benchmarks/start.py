"""Where a warm Start's time goes, step by step, in one run.

    ./kernellab bench start [--runs 3]      (or .venv/bin/python -m benchmarks.start)

Each run fills the warm pool with one saved guest (untimed), then Starts a lab
as the platform does: services.lab_start (the row, REQUESTED), then the
worker's step (lifecycle.provision, run here in-process so that its steps can
be read: claim, restore, agent, clock and hostname, starter files, the state
change to RUNNING), then what the page does once it hears "Running": a
console token and the websocket through a real ASGI server and the console
hub, and a command typed at the prompt and seen answered ("first answer":
the student has a working prompt). Also when the prompt with the VM's own
hostname reached the console log (the guest's side of the same moment).
Medians of each step over the runs. Uses its own database and VM folder;
leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.support import configure, destroy_all

WORK = Path("/var/lib/kernellab/bench-start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure(WORK)
    from django.conf import settings

    from labplatform.accounts.models import User
    from labplatform.courses.models import Assignment
    from tests.support.console_client import ConsoleClient
    from tests.support.processes import asgi_server_process
    from vms import guests, lifecycle, services
    from vms.images import ensure_image
    from vms.models import LabVM, VMState

    settings.VM_POOL_SIZE = 1
    image = ensure_image(progress=print)
    alice = User.objects.get(username="alice")
    assignment = Assignment.objects.get(exercise__slug="bench")
    profile = lifecycle.profile_for("qemu:///system", image, 1024, 1)
    hv = lifecycle.hypervisor("qemu:///system")
    env = {"VM_POOL_SIZE": "1", "VIRT_TYPE": "qemu", "VM_DIR": str(WORK / "vms")}
    results: dict[str, list[float]] = defaultdict(list)
    boot = lifecycle._boot

    try:
        logs = Path("/tmp/kernellab-bench-start-logs")
        logs.mkdir(exist_ok=True)
        with asgi_server_process(logs, **env) as (url, _server):
            for run in range(args.runs):
                guests.pool_fill(hv, profile, size=1, boot_timeout=600)
                steps: list[tuple[str, float]] = []

                def timed_boot(vm: LabVM, steps: list[tuple[str, float]] = steps) -> Any:
                    steps.extend(boot(vm))

                prompt_at: list[float] = []
                started = time.monotonic()
                with mock.patch("celery.app.task.Task.apply_async"):
                    vm = services.lab_start(user=alice, assignment=assignment)
                    requested = time.monotonic()
                    watcher = threading.Thread(
                        target=_watch_prompt, args=(vm, prompt_at), daemon=True
                    )
                    watcher.start()
                    with mock.patch.object(lifecycle, "_boot", timed_boot):
                        lifecycle.provision(str(vm.id))
                running = time.monotonic()
                vm.refresh_from_db()
                assert vm.state == VMState.RUNNING, vm.error_message
                opened, answered = asyncio.run(_console(url, vm, alice, ConsoleClient))
                watcher.join(30)
                results["request (row, REQUESTED)"].append(requested - started)
                for step, seconds in steps:
                    results[f"  {step}"].append(seconds)
                accounted = sum(seconds for _step, seconds in steps)
                results["  state changes, events"].append(running - requested - accounted)
                results["worker step to RUNNING"].append(running - requested)
                results["console token + websocket"].append(opened - running)
                results["first answer at the prompt"].append(answered - opened)
                results["click to a working prompt"].append(answered - started)
                if prompt_at:
                    results["(prompt in the console log)"].append(prompt_at[0] - started)
                print(f"run {run + 1}: click to a working prompt {answered - started:.2f} s")
                services.lab_destroy(vm=LabVM.objects.get(pk=vm.pk))
                lifecycle.destroy(str(vm.id))
    finally:
        destroy_all(WORK)
    print(f"\nwarm Start, {args.runs} runs{'':<14}{'median s':>10}   each")
    for name, values in results.items():
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:<38}{statistics.median(values):>10.2f}   {each}")


def _watch_prompt(vm: Any, found: list[float]) -> None:
    from vms import lifecycle

    needle = f"root@{vm.hostname}".encode()
    path = lifecycle.vm_files(vm).shell_log
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.is_file() and needle in path.read_bytes():
            found.append(time.monotonic())
            return
        time.sleep(0.01)


async def _console(url: str, vm: Any, user: Any, client: Any) -> tuple[float, float]:
    term = await client.open(url, vm, user)
    opened = time.monotonic()
    await term.type("echo first-$((6*7))\r")
    await term.wait_for(b"first-42", timeout=30)
    answered = time.monotonic()
    await term.close()
    return opened, answered


if __name__ == "__main__":
    main()
