"""Hidden check of hello-module: three load/unload cycles of the module the
visible checker built (its copy in the checker's own root-only folder), each
logging its greeting and farewell exactly once, at info level, with no
kernel warning, oops or leftover state. Only records the kernel emitted
while this check's own insmod or rmmod ran are counted."""

from __future__ import annotations

import re
from pathlib import Path

from kernellab_check import Fail, Kmsg, loaded_modules, run, tail, trouble

MODULE = "hello"
GREETING = re.compile(r"hello,?\s+kernellab", re.IGNORECASE)
FAREWELL = re.compile(r"goodbye,?\s+kernellab", re.IGNORECASE)
INFO_LEVEL = 6
CYCLES = 3
INSMOD = "/usr/sbin/insmod"
RMMOD = "/usr/sbin/rmmod"

CHECKS = [("reload_cycles", "Survives three load/unload cycles without kernel warnings", 15)]


def reload_cycles(ctx) -> str:
    if ctx is None or ctx.ko is None or not ctx.was_loaded:
        raise Fail("Not checked: the module built from your sources never loaded.")
    if MODULE in loaded_modules():
        raise Fail("Not checked: the module was still loaded after the visible checks.")
    with Kmsg() as kmsg:
        for cycle in range(1, CYCLES + 1):
            kmsg.drain()
            loaded = run([INSMOD, str(ctx.ko)], timeout=60)
            on_load = kmsg.read()
            if MODULE in loaded_modules():
                ctx.loaded_by_us = True
            if not loaded.ok:
                raise Fail(f"Load number {cycle} failed: {tail(loaded.output, 2)}")
            kmsg.drain()
            unloaded = run([RMMOD, MODULE], timeout=60)
            on_unload = kmsg.read()
            if MODULE not in loaded_modules():
                ctx.loaded_by_us = False
            if not unloaded.ok:
                raise Fail(f"Unload number {cycle} failed: {tail(unloaded.output, 2)}")
            problems = trouble(on_load + on_unload)
            if problems:
                raise Fail(f"Cycle {cycle} produced a kernel warning: {problems[0]}")
            greetings = sum(1 for r in on_load if r.level == INFO_LEVEL and GREETING.search(r.text))
            farewells = sum(
                1 for r in on_unload if r.level == INFO_LEVEL and FAREWELL.search(r.text)
            )
            if greetings != 1 or farewells != 1:
                raise Fail(
                    f"Cycle {cycle} logged the greeting {greetings} time(s) and the farewell "
                    f"{farewells} time(s) at info level; each should appear exactly once per "
                    "load/unload."
                )
            if Path(f"/sys/module/{MODULE}").exists():
                raise Fail(f"After unload number {cycle}, /sys/module/hello still exists.")
    return f"{CYCLES} load/unload cycles each logged one greeting and one farewell, cleanly."


def run_checks(report, ctx) -> None:
    report.run("reload_cycles", reload_cycles, ctx)
