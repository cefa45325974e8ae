"""Checker of the bpftrace-syscalls exercise.

Runs a private copy of the student's script under bpftrace and, once every
probe is attached, a workload of its own: a process with a random name that
makes a random number of openat() calls on files with random names in a
folder with a random name (trace_run.py). Then it stops bpftrace as Ctrl-C
would and compares the count printed for that process name with the truth.
A script that prints made-up numbers, or that recognises the checker by a
name or a path, cannot know either the name or the count; the feedback never
repeats the name, so nothing in it helps the next run.

The script runs as root (bpftrace accepts no one else): at Submit it is data
that the host's validator read first (no cat(), no #include, only kernel
probes...); here, in the student's own guest at Check, the student is root
anyway.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import trace_run as tr
from kernellab_check import Fail, Report, scratch_dir
from kernellab_check import home as student_home

MAX_SCRIPT_BYTES = 64 * 1024  # exercise.toml's max_bytes: what Submit takes

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
    if source.is_symlink():
        raise Fail(f"{source} is a symbolic link; Submit only takes regular files.")
    if not source.is_file():
        raise Fail(f"There is no script at {source}.")
    size = source.stat().st_size
    if size > MAX_SCRIPT_BYTES:
        raise Fail(
            f"{source} is {size} bytes; the limit is {MAX_SCRIPT_BYTES} (64 KiB): "
            "that is not a short bpftrace script."
        )
    ctx.script = work / "openat_count.bt"
    shutil.copyfile(source, ctx.script, follow_symlinks=False)
    ctx.workload = tr.workloads(1, ok=(40, 400))[0]
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
            "While your script ran, the checker started a test process, under a name chosen "
            f"at random for this run, that called openat() {ctx.workload.total} times; no map "
            "your script printed has an entry for that name. Key your map by the process "
            f"name. Your script printed: {tr.describe_maps(ctx.result)}."
        )
    return f"Your map {found[0]} has an entry for the checker's test process."


def check_count(ctx: Context) -> str:
    if ctx.result is None or ctx.workload is None:
        raise Fail("Not checked: your script did not run.")
    found = tr.count_for(ctx.result, ctx.workload)
    if found is None:
        raise Fail("Not checked: no count was found for the checker's test process.")
    expected, got = ctx.workload.total, found[1]
    if abs(got - expected) > tr.tolerance(expected):
        raise Fail(
            f"The checker's test process called openat() {expected} times; your script "
            f"counted {got}. Count every call, on entry to the system call, and nothing else."
        )
    return f"The checker's test process called openat() {expected} times; you counted {got}."


def main() -> None:
    report = Report(CHECKS)
    ctx = Context()
    with report, scratch_dir("bpftrace-") as work:
        if report.run("script_runs", check_script_runs, work, ctx) or (
            ctx.result is not None and ctx.result.ready
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
