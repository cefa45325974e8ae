"""Checker of the sysctl-tuning exercise.

Live values come from /proc/sys. Persistence is judged the way Submit will
judge it: at Submit the platform copies the regular files of /etc/sysctl.d
(nothing else: no links, no /etc/sysctl.conf) into a clean machine and
reboots it before this runs, so the live values there prove that the
configuration survives a reboot. On Check, sysctl_config.py works that boot
out from the files (which files count, how systemd-sysctl reads them, and
what the kernel does with settings that change each other), so that Check
and Submit agree. The checker only reads; it changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import sysctl_config as cfg
from kernellab_check import Fail, Report, mode, sysctl_read

# (check id, key, wanted value, what it does)
KNOBS = [
    ("live_swappiness", "vm.swappiness", "10", "how eagerly anonymous memory is swapped out"),
    ("live_dirty_ratio", "vm.dirty_ratio", "15", "the dirty page-cache share that blocks writers"),
    ("live_ip_forward", "net.ipv4.ip_forward", "1", "IPv4 forwarding between interfaces"),
]

CHECKS = [
    ("live_swappiness", "vm.swappiness is 10 right now", 10),
    ("live_dirty_ratio", "vm.dirty_ratio is 15 right now", 10),
    ("live_ip_forward", "net.ipv4.ip_forward is 1 right now", 10),
    ("sysctl_d_file", "A file in /etc/sysctl.d sets all three", 20),
    ("after_reboot", "The values survive a reboot", 40),
]


def check_live(dotted: str, wanted: str) -> str:
    value = sysctl_read(dotted)
    if value is None:
        raise Fail(f"{dotted} cannot be read from /proc/sys on this machine.")
    if value != wanted:
        raise Fail(
            f"{dotted} is {value} right now, not {wanted}. Change the running kernel's value "
            "(with `sysctl -w`, by writing to /proc/sys, or by applying your file)."
        )
    return f"{dotted} is {wanted} in the running kernel."


def wrong_values(outcome: cfg.Boot) -> list[str]:
    """Sentences for the knobs ``outcome`` does not leave at their value."""
    wrong = []
    for _check_id, dotted, wanted, _what in KNOBS:
        if outcome.change(dotted) is None or outcome.value(dotted) != int(wanted):
            wrong.append(outcome.explain(dotted))
    return wrong


def notes_for(files: list[Path], outcome: cfg.Boot) -> list[str]:
    """Why the files may not do what their author meant."""
    keys = [dotted for _c, dotted, _w, _x in KNOBS]
    return (
        cfg.misspelt(files)
        + outcome.problems
        + cfg.not_counted()
        + cfg.elsewhere([*keys, "net.ipv4.conf.all.forwarding"])
    )


def with_notes(text: str, notes: list[str], limit: int = 4) -> str:
    if not notes:
        return text
    more = f" (and {len(notes) - limit} more)" if len(notes) > limit else ""
    return f"{text} Note: {'; '.join(notes[:limit])}{more}."


def check_sysctl_d_file() -> str:
    mine = cfg.student_files()
    if not mine:
        raise Fail(
            with_notes(
                "There is no file of yours in /etc/sysctl.d ending in .conf, so nothing there "
                "makes your values permanent. (/etc/sysctl.conf is the old place; this exercise "
                "asks for a file of its own in /etc/sysctl.d.)",
                cfg.not_counted() + cfg.elsewhere([d for _c, d, _w, _x in KNOBS]),
            )
        )
    outcome = cfg.boot(mine)
    wrong = wrong_values(outcome)
    names = ", ".join(p.name for p in mine)
    if wrong:
        raise Fail(
            with_notes(
                f"Your file(s) in /etc/sysctl.d ({names}), applied the way a boot applies "
                f"them: {'; '.join(wrong)}.",
                notes_for(mine, outcome),
            )
        )
    refusals = cfg.submit_refusals()
    if refusals:
        raise Fail(
            f"Your file(s) set all three, but Submit would refuse your /etc/sysctl.d: "
            f"{'; '.join(refusals[:4])}."
        )
    deciders = sorted({outcome.change(d).by.path.name for _c, d, _w, _x in KNOBS})
    return with_notes(
        f"/etc/sysctl.d/{', '.join(deciders)} sets all three values.", cfg.not_counted()
    )


def uptime_seconds() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def check_after_reboot() -> str:
    live = {dotted: sysctl_read(dotted) for _c, dotted, _w, _x in KNOBS}
    all_live = all(live[d] == w for _c, d, w, _x in KNOBS)
    files = cfg.boot_files()
    outcome = cfg.boot(files)
    if mode() == "submit":
        if all_live:
            return "After rebooting a clean machine with your files, all three values are right."
        wrong = [f"{d} was {live[d]}" for _c, d, w, _x in KNOBS if live[d] != w]
        expected = wrong_values(outcome)
        raise Fail(
            with_notes(
                "A clean machine was rebooted with the regular files of your /etc/sysctl.d, and "
                + "; ".join(wrong)
                + "."
                + (
                    " Reading your files as the boot does: " + "; ".join(expected) + "."
                    if expected
                    else ""
                ),
                notes_for(cfg.student_files(), outcome),
            )
        )
    wrong = wrong_values(outcome)
    if wrong:
        raise Fail(
            with_notes(
                "Your values would not survive a reboot. Submit copies the regular files of "
                "your /etc/sysctl.d into a clean machine and reboots it; applied the way that "
                "boot applies them, " + "; ".join(wrong) + ".",
                notes_for(cfg.student_files(), outcome),
            )
        )
    refusals = cfg.submit_refusals()
    if refusals:
        raise Fail(
            "Your files would set all three at boot, but Submit would refuse them (see the "
            f"check above): {refusals[0]}."
        )
    booted_at = time.time() - uptime_seconds()
    deciders = [outcome.change(d).by.path for _c, d, _w, _x in KNOBS]
    # ctime, not mtime: tar, cp -p and touch can set an mtime in the past.
    if all_live and all(p.stat().st_ctime < booted_at for p in deciders):
        return (
            "Your files were in place before this machine last booted and all three values are "
            "live now: they survived a reboot."
        )
    return (
        "By your files, a reboot sets all three values (worked out the way systemd-sysctl and "
        "the kernel apply them). Submit confirms it for real by rebooting a clean machine with "
        "your files."
    )


def main() -> None:
    report = Report(CHECKS)
    with report:
        for check_id, dotted, wanted, _what in KNOBS:
            report.run(check_id, check_live, dotted, wanted)
        report.run("sysctl_d_file", check_sysctl_d_file)
        report.run("after_reboot", check_after_reboot)
        report.run_hidden()


if __name__ == "__main__":
    main()
