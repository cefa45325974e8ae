"""How many idle lab guests one host holds, and what each costs, in one run.

    ./kernellab bench density [--limit 40] [--memory 1024]
                                                (or .venv/bin/python -m benchmarks.density)

Starts idle lab guests the way a Start gets one (vms.guests.prepare_guest: a
warm-pool entry booted and saved, then restored with the platform's domain
XML; ``--cold`` boots each one instead) until ``--limit`` guests run or the
host's memory would pass its safety margin (MemAvailable under 2 GiB, or more
than 80 % of MemTotal in use, counting one more guest of the size measured so
far). Then, with the guests idle at their prompts, it prints:

- guests held;
- host memory per guest: the rise of MemTotal - MemAvailable since before the
  first guest, divided by the guests (other work on the host shows up here),
  and the QEMU processes' own PSS (/proc/<pid>/smaps_rollup), which does not;
- CPU per idle guest: the QEMU processes' utime + stime over ``--cpu-seconds``,
  as % of one core per guest.

Then the same with KSM merging the guests' identical pages, when
/sys/kernel/mm/ksm is writable here (what it saved: pages_sharing, and what
ksmd's own scanning costs), and after every guest has allocated and freed
``--burst`` MiB (what a compiler run leaves behind; with the virtio balloon's
free page reporting the guest hands those pages back to the host).

Every guest it starts carries the title "KernelLab density bench" and lives in
its own VM folder; all of them are destroyed at the end, whatever happens, and
a run starts by removing what a killed run left.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.support import configure

WORK = Path("/var/lib/kernellab/density")  # short: console sockets live in its folders
TITLE = "KernelLab density bench"
KSM = Path("/sys/kernel/mm/ksm")
PROC = Path("/proc")
MIB = 1 << 20
GIB = 1 << 30
MAX_FAILURES = 3
PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# What `./kernellab services` sets (ksm_enable there); keep the two equal.
KSM_PAGES_TO_SCAN = 1000


# -- reading /proc and /sys ------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per field ("MemAvailable: 123 kB" -> 125952)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        unit = parts[1] if len(parts) > 1 else ""
        fields[name.strip()] = int(parts[0]) * (1024 if unit == "kB" else 1)
    return fields


def parse_pss(text: str) -> int:
    """The Pss of /proc/<pid>/smaps_rollup, in bytes."""
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "Pss":
            return int(rest.split()[0]) * 1024
    raise ValueError("no Pss line in smaps_rollup")


def parse_cpu_ticks(text: str) -> int:
    """utime + stime (fields 14 and 15) of /proc/<pid>/stat, in clock ticks.
    The command name (field 2) may hold spaces and parentheses: the fields
    are counted from its closing parenthesis."""
    after_name = text[text.rindex(")") + 2 :].split()
    # after_name[0] is field 3 (state): utime is field 14, stime field 15.
    return int(after_name[11]) + int(after_name[12])


def is_guest_process(cmdline: bytes, domain_name: str) -> bool:
    """Whether a /proc/<pid>/cmdline is the QEMU libvirt runs for this domain
    (``-name guest=<name>,...``)."""
    args = cmdline.split(b"\0")
    wanted = f"guest={domain_name}".encode()
    return any(
        arg == wanted or arg.startswith(wanted + b",")
        for flag, arg in itertools.pairwise(args)
        if flag == b"-name"
    )


def read_meminfo() -> dict[str, int]:
    return parse_meminfo((PROC / "meminfo").read_text())


def used_bytes(meminfo: Mapping[str, int]) -> int:
    return meminfo["MemTotal"] - meminfo["MemAvailable"]


def guest_pids(domain_names: Iterable[str], proc: Path = PROC) -> dict[str, int]:
    wanted = set(domain_names)
    found: dict[str, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        for name in wanted - found.keys():
            if is_guest_process(cmdline, name):
                found[name] = int(entry.name)
    missing = wanted - found.keys()
    if missing:
        raise RuntimeError(f"no QEMU process for {sorted(missing)}")
    return found


def pss_total(pids: Iterable[int]) -> int:
    return sum(parse_pss((PROC / str(pid) / "smaps_rollup").read_text()) for pid in pids)


def cpu_seconds(pids: Iterable[int]) -> float:
    ticks = sum(parse_cpu_ticks((PROC / str(pid) / "stat").read_text()) for pid in pids)
    return ticks / CLOCK_TICKS


def kernel_thread_pid(name: str) -> int | None:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    return int(entry.name)
            except OSError:
                continue
    return None


# -- when to stop starting guests ----------------------------------------------


@dataclass(frozen=True)
class StopRule:
    limit: int
    max_used_fraction: float = 0.80
    min_available: int = 2 * GIB

    def reason(
        self, *, held: int, meminfo: Mapping[str, int], baseline_used: int, declared: int
    ) -> str:
        """Why not to start one more guest, or "" to go on. The next guest is
        counted at the average rise per guest so far (at its declared memory
        for the first, whose footprint is not known yet)."""
        if held >= self.limit:
            return f"the limit of {self.limit} guests"
        rise = used_bytes(meminfo) - baseline_used
        next_guest = max(rise // held, 0) if held else declared
        available = meminfo["MemAvailable"] - next_guest
        if available < self.min_available:
            return f"MemAvailable would fall under {self.min_available // MIB} MiB"
        used = used_bytes(meminfo) + next_guest
        if used > self.max_used_fraction * meminfo["MemTotal"]:
            return f"more than {self.max_used_fraction:.0%} of MemTotal would be in use"
        return ""


# -- KSM ---------------------------------------------------------------------------


def read_ksm(ksm: Path = KSM) -> dict[str, int]:
    """KSM's counters that are numbers (every file that reads as one integer)."""
    values: dict[str, int] = {}
    for entry in ksm.iterdir():
        try:
            text = entry.read_text().strip()
        except OSError:
            continue
        if text.lstrip("-").isdigit():
            values[entry.name] = int(text)
    return values


def ksm_saved_bytes(counters: Mapping[str, int]) -> int:
    """Memory KSM saves: each page in pages_sharing is one copy fewer; zero
    pages merged with the kernel's zero page (use_zero_pages) count too."""
    return (counters.get("pages_sharing", 0) + counters.get("ksm_zero_pages", 0)) * PAGE


def ksm_writable(ksm: Path = KSM) -> bool:
    """Whether this kernel has KSM and we may switch it (a container may see
    /sys read-only): writing the value it has changes nothing."""
    run = ksm / "run"
    try:
        run.write_text(run.read_text())
    except OSError:
        return False
    return True


def ksm_set(run: int, ksm: Path = KSM) -> None:
    """0: stop merging (merged pages stay merged); 1: merge; 2: stop and unmerge."""
    (ksm / "run").write_text(f"{run}\n")


def ksm_wait_settled(timeout: float, ksm: Path = KSM) -> dict[str, int]:
    """Until three full scans have passed since now and pages_sharing has
    stopped growing (by 1 % between scans), or the timeout; returns the counters."""
    deadline = time.monotonic() + timeout
    start = read_ksm(ksm)
    last_sharing, last_scan = -1, start.get("full_scans", 0)
    counters = start
    while time.monotonic() < deadline:
        time.sleep(1)
        counters = read_ksm(ksm)
        if counters.get("full_scans", 0) == last_scan:
            continue
        last_scan = counters["full_scans"]
        sharing = counters.get("pages_sharing", 0)
        scans = last_scan - start.get("full_scans", 0)
        # A page merges on its second scan at the earliest: judge from the third.
        if scans >= 3 and sharing and abs(sharing - last_sharing) <= 0.01 * sharing:
            return counters
        last_sharing = sharing
    print(f"  (KSM still merging after {timeout:.0f} s: figures are a lower bound)")
    return counters


# -- one measurement -----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    label: str
    guests: int
    used_rise: int  # MemTotal - MemAvailable, minus what it was before any guest
    pss: int  # all the guests' QEMU processes
    cpu_core_fraction: float  # all of them, of one core (1.0 = a whole core)
    extra: str = ""

    def row(self) -> str:
        n = max(self.guests, 1)
        return (
            f"{self.label:<34}{self.guests:>6}{self.used_rise / n / MIB:>12.0f}"
            f"{self.pss / n / MIB:>11.0f}{100 * self.cpu_core_fraction / n:>12.2f}   {self.extra}"
        )


HEADER = f"{'':<34}{'guests':>6}{'MiB/guest':>12}{'PSS MiB':>11}{'% CPU/guest':>12}"


def measure(
    label: str, pids: Mapping[str, int], baseline_used: int, seconds: float, extra: str = ""
) -> Sample:
    before, started = cpu_seconds(pids.values()), time.monotonic()
    time.sleep(seconds)
    spent, elapsed = cpu_seconds(pids.values()) - before, time.monotonic() - started
    sample = Sample(
        label=label,
        guests=len(pids),
        used_rise=used_bytes(read_meminfo()) - baseline_used,
        pss=pss_total(pids.values()),
        cpu_core_fraction=spent / elapsed,
        extra=extra,
    )
    print(sample.row(), flush=True)
    return sample


def thread_cpu(pid: int | None, seconds: float) -> float:
    """A process's (ksmd's) CPU over ``seconds``, as a fraction of one core."""
    if pid is None:
        return 0.0
    before, started = cpu_seconds([pid]), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds([pid]) - before) / (time.monotonic() - started)


# -- the run -----------------------------------------------------------------------


def remove_leftovers() -> None:
    """Guests of a killed run: ours by title (their folders are wiped by configure)."""
    from vms import lifecycle

    for guest in lifecycle.hypervisor("qemu:///system").guests():
        if TITLE in guest.xml() or str(WORK) in guest.xml():
            print(f"removing {guest.name}, left by an earlier run")
            guest.destroy()
            guest.undefine()


def start_guests(
    args: argparse.Namespace, profile: Any, hv: Any, rule: StopRule, baseline_used: int
) -> tuple[list[Any], str]:
    from vms import guests
    from vms.guest_folder import GuestFolder
    from vms.hypervisor.errors import HypervisorError

    started: list[Any] = []
    failures: list[str] = []
    while True:
        why = rule.reason(
            held=len(started),
            meminfo=read_meminfo(),
            baseline_used=baseline_used,
            declared=args.memory * MIB,
        )
        if why:
            return started, why
        number = len(started) + 1
        mark = time.monotonic()
        folder = GuestFolder(WORK / "vms" / f"density-{number}")
        try:
            if not args.cold:
                guests.pool_add_entry(hv, profile, boot_timeout=args.boot_timeout)
            prepared = guests.prepare_guest(
                hv,
                profile,
                folder,
                guests.GuestRole(title=f"{TITLE} {number}", vm_id=f"density-{number}"),
                boot_timeout=args.boot_timeout,
                use_pool=not args.cold,
                domain_uuid=uuid.uuid4(),
            )
        except HypervisorError as exc:
            # Under a heavy host load a TCG guest's early timer check can fail
            # ("IO-APIC + timer doesn't work!"): count it, try another.
            failures.append(exc.message)
            print(f"guest {number} did not start: {exc.message}", flush=True)
            discard_folder_guest(hv, folder)
            if len(failures) >= MAX_FAILURES:
                return started, f"{len(failures)} guests that did not start"
            continue
        started.append(prepared)
        rise = (used_bytes(read_meminfo()) - baseline_used) / MIB
        print(
            f"guest {number}: {'booted' if args.cold else 'restored'} in "
            f"{time.monotonic() - mark:.0f} s; host memory +{rise:.0f} MiB so far",
            flush=True,
        )


def discard_folder_guest(hv: Any, folder: Any) -> None:
    """The guest (if any) whose disk is in ``folder``, and the folder."""
    for guest in hv.guests():
        if str(folder.directory) in guest.xml():
            guest.destroy()
            guest.undefine()
    folder.remove()


def burst(prepared: Iterable[Any], mib: int) -> None:
    """Each guest fills ``mib`` MiB with data and frees it (the process exits)."""
    script = f"b = b'x' * ({mib} << 20)"
    for one in prepared:
        done = one.agent.exec(["python3", "-c", script], timeout=300)
        if done.exit_code != 0:
            raise RuntimeError(f"burst failed in {one.guest.name}: {done.stderr[-200:]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=40, help="at most this many guests")
    parser.add_argument("--memory", type=int, help="MiB per guest (default: a lab VM's)")
    parser.add_argument("--cold", action="store_true", help="boot each guest, no warm pool")
    parser.add_argument("--boot-timeout", type=float, default=240, help="seconds per boot")
    parser.add_argument("--settle", type=float, default=30, help="idle seconds before measuring")
    parser.add_argument("--cpu-seconds", type=float, default=20, help="CPU sampling window")
    parser.add_argument("--ksm-wait", type=float, default=300, help="seconds KSM may take")
    parser.add_argument("--no-ksm", action="store_true", help="leave KSM as it is")
    parser.add_argument("--burst", type=int, default=256, help="MiB each guest allocates, frees")
    parser.add_argument(
        "--no-balloon",
        action="store_true",
        help="the domain as before free page reporting (<memballoon model='none'/>)",
    )
    parser.add_argument(
        "--ksm-pages-to-scan",
        type=int,
        default=KSM_PAGES_TO_SCAN,
        help="KSM's pages_to_scan while it is on (default: what ./kernellab services sets)",
    )
    parser.add_argument(
        "--guest-cmdline",
        default="",
        help="more guest kernel parameters (e.g. nohz=off: what the timer tick costs)",
    )
    args = parser.parse_args()
    configure(WORK)
    remove_leftovers()
    with contextlib.ExitStack() as changes:
        if args.no_balloon:
            changes.enter_context(mock.patch("vms.hypervisor.domain._memballoon", _no_balloon))
        if args.guest_cmdline:
            changes.enter_context(_guest_cmdline_added(args.guest_cmdline.split()))
        run(args)


def _no_balloon(devices: ET.Element) -> None:
    ET.SubElement(devices, "memballoon", model="none")


@contextlib.contextmanager
def _guest_cmdline_added(params: list[str]) -> Iterator[None]:
    """Every guest's domain (the pool entries' boots too) with ``params`` on
    its kernel command line."""
    import dataclasses

    from vms import guests

    spec = guests.guest_spec

    def with_params(*args: Any, **kwargs: Any) -> Any:
        made = spec(*args, **kwargs)
        return dataclasses.replace(made, extra_cmdline=(*made.extra_cmdline, *params))

    with mock.patch.object(guests, "guest_spec", with_params):
        yield


def run(args: argparse.Namespace) -> None:
    from vms import lifecycle
    from vms.images import ensure_image
    from vms.models import DEFAULT_MEMORY_MIB, DEFAULT_VCPUS

    args.memory = args.memory or DEFAULT_MEMORY_MIB

    image = ensure_image(progress=print)
    profile = lifecycle.profile_for("qemu:///system", image, args.memory, DEFAULT_VCPUS)
    hv = lifecycle.hypervisor("qemu:///system")
    use_ksm = not args.no_ksm and ksm_writable()
    ksm_before = read_ksm() if KSM.is_dir() else {}
    prepared: list[Any] = []
    samples: list[Sample] = []
    try:
        if use_ksm:
            ksm_set(2)  # the "off" figures: nothing merged, nothing merging
        baseline_used = used_bytes(read_meminfo())
        rule = StopRule(limit=args.limit)
        prepared, why = start_guests(args, profile, hv, rule, baseline_used)
        print(f"stopped at {len(prepared)} guests: {why}")
        if not prepared:
            return
        pids = guest_pids(one.guest.name for one in prepared)
        print(f"letting them idle {args.settle:.0f} s\n\n{HEADER}", flush=True)
        time.sleep(args.settle)
        samples.append(measure("idle, KSM off", pids, baseline_used, args.cpu_seconds))
        if use_ksm:
            samples.append(_with_ksm(args, pids, baseline_used))
            ksm_set(2)  # the burst's freed pages are all alike: KSM would hide them
        if args.burst:
            burst(prepared, args.burst)
            time.sleep(max(args.settle, 60))  # the guests report freed pages every 2 s
            label = f"after a {args.burst} MiB burst, KSM off"
            samples.append(measure(label, pids, baseline_used, args.cpu_seconds))
    finally:
        _clean_up(prepared, hv, ksm_before if use_ksm else None)
    balloon = "none" if args.no_balloon else "virtio, free page reporting"
    extra = f", kernel +'{args.guest_cmdline}'" if args.guest_cmdline else ""
    print(
        f"\n{len(prepared)} guests of {args.memory} MiB, 1 vCPU, balloon {balloon}{extra}; "
        f"stopped by {why}.\n{HEADER}",
        *(sample.row() for sample in samples),
        "MiB/guest: the rise of host MemTotal - MemAvailable since before the first guest"
        " (others' work on the host shows up here); PSS: the guests' QEMU processes alone."
        " % CPU: of one core, per idle guest.",
        sep="\n",
    )


def _with_ksm(args: argparse.Namespace, pids: Mapping[str, int], baseline_used: int) -> Sample:
    ksmd = kernel_thread_pid("ksmd")
    mark = time.monotonic()
    (KSM / "pages_to_scan").write_text(f"{args.ksm_pages_to_scan}\n")
    ksm_set(1)
    counters = ksm_wait_settled(args.ksm_wait)
    merged_after = time.monotonic() - mark
    ksmd_busy = thread_cpu(ksmd, args.cpu_seconds)
    saved = ksm_saved_bytes(counters)
    return measure(
        f"idle, KSM on ({args.ksm_pages_to_scan} pages/scan)",
        pids,
        baseline_used,
        args.cpu_seconds,
        extra=(
            f"KSM saves {saved / MIB:.0f} MiB host-wide (all guests) after "
            f"{merged_after:.0f} s; ksmd {100 * ksmd_busy:.1f} % of a core"
        ),
    )


def _clean_up(prepared: list[Any], hv: Any, ksm_before: Mapping[str, int] | None) -> None:
    from benchmarks.support import destroy_all
    from vms.guests import discard

    for one in prepared:
        discard(hv, uuid.UUID(one.guest.uuid))
    destroy_all(WORK)
    if ksm_before is not None:
        (KSM / "pages_to_scan").write_text(f"{ksm_before['pages_to_scan']}\n")
        was = ksm_before.get("run", 0)
        ksm_set(2 if was == 0 else was)  # unmerge what this run merged, unless KSM was on
        ksm_set(was)


if __name__ == "__main__":
    main()
