"""Checker of the bpftrace-syscalls exercise.

Runs a private copy of the student's script under bpftrace, starts a workload
of its own with a random process name and a random number of openat() calls
once the probes are attached, stops bpftrace with SIGINT and compares the
count printed for that process name with the truth. A script that prints
made-up numbers cannot know either the name or the count.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import trace_run as tr
from kernellab_check import Fail, Report, scratch_dir
from kernellab_check import home as student_home

MAX_SCRIPT_BYTES = 64 * 1024

CHECKS = [
    ("script_runs", "Your script compiles, attaches and stops on Ctrl-C", 20),
    ("keyed_by_process", "Counts are kept per process name", 20),
    ("count_accurate", "Counts match a workload the checker runs", 40),
]


@dataclass
class Context:
    script: Path | None = None  # the private copy of the student's script
    result: tr.TraceResult | None = None
    workload: tr.Workload | None = None


def script_path() -> Path:
    return student_home() / "bpftrace" / "openat_count.bt"


def check_script_runs(work: Path, ctx: Context) -> str:
    source = script_path()
    if not source.is_file():
        raise Fail(f"There is no script at {source}.")
    if source.stat().st_size > MAX_SCRIPT_BYTES:
        raise Fail(f"{source} is larger than 64 KiB; that is not a short bpftrace script.")
    ctx.script = work / source.name
    shutil.copyfile(source, ctx.script)
    ctx.workload = tr.Workload(tr.random_name(), tr.random_count(60, 400))
    ctx.result = tr.run_trace(ctx.script, [ctx.workload])
    tr.require_started(ctx.result)
    if not ctx.result.exited:
        raise Fail("Your script attached its probes but did not stop when it got SIGINT (Ctrl-C).")
    return (
        f"bpftrace compiled your script, attached {ctx.result.attached} probe(s) "
        "and stopped on Ctrl-C."
    )


def check_keyed(ctx: Context) -> str:
    if ctx.result is None or ctx.workload is None:
        raise Fail("Not checked: your script did not run.")
    found = tr.count_for(ctx.result, ctx.workload)
    if found is None:
        raise Fail(
            f"While your script ran, the checker started a process named "
            f"'{ctx.workload.name}' that called openat(), but no map your script printed has "
            f"an entry for that name. Key your map by the process name. Your script printed: "
            f"{tr.describe_maps(ctx.result)}"
        )
    return f"Your map {found[0]} has an entry for the checker's process '{ctx.workload.name}'."


def check_count(ctx: Context) -> str:
    if ctx.result is None or ctx.workload is None:
        raise Fail("Not checked: your script did not run.")
    found = tr.count_for(ctx.result, ctx.workload)
    if found is None:
        raise Fail("Not checked: no count was found for the checker's process.")
    expected, got = ctx.workload.total, found[1]
    if abs(got - expected) > tr.tolerance(expected):
        raise Fail(
            f"The checker's process '{ctx.workload.name}' called openat() {expected} times; "
            f"your script counted {got}. Count every call, on entry to the system call."
        )
    return f"Process '{ctx.workload.name}' called openat() {expected} times; you counted {got}."


def main() -> None:
    report = Report(CHECKS)
    ctx = Context()
    with report, scratch_dir("bpftrace-") as work:
        if report.run("script_runs", check_script_runs, work, ctx) or (
            ctx.result is not None and ctx.result.attached
        ):
            report.run("keyed_by_process", check_keyed, ctx)
            report.run("count_accurate", check_count, ctx)
        else:
            why = "Not checked: your script did not run."
            report.skip("keyed_by_process", why)
            report.skip("count_accurate", why)
        report.run_hidden(ctx)


if __name__ == "__main__":
    main()
