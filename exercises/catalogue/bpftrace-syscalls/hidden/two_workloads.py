"""Hidden check of bpftrace-syscalls: a fresh run of the student's script
with two new processes at once, under names it has never seen, one of which
also makes openat() calls that fail (a missing file, a file used as a
folder, a folder opened for writing). Each must get its own, right count."""

from __future__ import annotations

import trace_run as tr
from kernellab_check import Fail

CHECKS = [("second_workload", "Two unseen processes at once, failed calls included", 20)]


def second_workload(ctx) -> str:
    if ctx is None or ctx.script is None or ctx.result is None or not ctx.result.ready:
        raise Fail("Not checked: your script did not run.")
    first, second = tr.workloads(2, ok=(30, 150))
    first = tr.Workload(first.name, first.ok, tr.random_count(20, 80))
    second = tr.Workload(second.name, tr.random_count(50, 250))
    result = tr.run_trace(ctx.script, [first, second])
    tr.require_started(result)
    wrong = []
    for label, workload in (("the first", first), ("the second", second)):
        found = tr.count_for(result, workload)
        got = "no entry for it" if found is None else f"you counted {found[1]}"
        if found is None or abs(found[1] - workload.total) > tr.tolerance(workload.total):
            failing = f" ({workload.bad} of them failing)" if workload.bad else ""
            wrong.append(f"{label} made {workload.total} calls{failing}, {got}")
    if wrong:
        raise Fail("Two test processes ran at once: " + "; ".join(wrong) + ".")
    return "Both processes were counted separately and exactly, failed calls included."


def run_checks(report, ctx) -> None:
    report.run("second_workload", second_workload, ctx)
