"""Checker of the hello-module exercise.

Nothing the student wrote runs with the checker's rights, and nothing the
student built is loaded unless this checker made it:

1. The student's sources (regular files named *.c, *.h, Makefile, Kbuild...
   at the top of /root/hello) are copied as data into a fresh folder of the
   unprivileged student user (`student_dir`).
2. Their Makefile (or Kbuild file) is read by make, as that user, for one
   thing only: the kbuild variables that say what the module is made of
   (obj-m, hello-objs / hello-y / hello-m). Whatever else it does, it does it
   as that user, in a folder that is then thrown away with every process
   that user has.
3. The module is built as that user, by kbuild, in a second fresh folder that
   holds only the .c and .h files and a Kbuild file this checker writes
   (`obj-m := hello.o`, plus the parts the Makefile listed): no line of the
   student's Makefile takes part, so the .ko can only come out of the
   compiler and the kernel's own build scripts, from the student's C files.
4. Once every process of that user is dead, hello.ko is copied into this
   checker's own root-only folder and checked (an ELF file, modinfo name
   `hello`, vermagic of the running kernel); that copy is what gets loaded,
   by absolute path, by this checker.
5. A kernel message counts only if the kernel emitted it while this checker's
   own insmod or rmmod ran: the log is drained right before each step, and
   records that user space wrote to /dev/kmsg are never read as the module's.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kernellab_check import (
    EXPECTED_MODULE_TAINT,
    TAINT_MEANING,
    Fail,
    Kmsg,
    KmsgRecord,
    Report,
    copy_to_student_dir,
    loaded_modules,
    module_taint,
    run,
    run_as_student,
    scratch_dir,
    student_dir,
    tail,
    trouble,
)
from kernellab_check import home as student_home

MODULE = "hello"
GREETING = re.compile(r"hello,?\s+kernellab", re.IGNORECASE)
FAREWELL = re.compile(r"goodbye,?\s+kernellab", re.IGNORECASE)
INFO_LEVEL = 6  # KERN_INFO: what pr_info() logs at
LEVEL_NAMES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]

# Tools, by absolute path (Debian bookworm: kmod's tools are links to /bin/kmod).
MAKE = "/usr/bin/make"
INSMOD = "/usr/sbin/insmod"
RMMOD = "/usr/sbin/rmmod"
MODINFO = "/usr/sbin/modinfo"

# What Submit collects from /root/hello (exercise.toml, [[grading.artifacts]]);
# Check reads the same files, so that it predicts what Submit will grade.
INCLUDE = ("*.c", "*.h", "Makefile", "makefile", "GNUmakefile", "Kbuild")
MAX_BYTES = 1 << 20
MAX_FILES = 64
KBUILD_FILES = ("Kbuild", "Makefile")  # what kbuild reads in a module's folder, in order
PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\.o$")
PROBE_MARK = "KERNELLAB-PROBE"
PROBE_TIMEOUT = 30
BUILD_TIMEOUT = 150
MAX_KO_BYTES = 16 << 20

GPL_COMPATIBLE = {
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
}

CHECKS = [
    ("not_left_loaded", "Your module was unloaded when you clicked Check", 15),
    ("builds", "Builds from your sources", 20),
    ("loads", "Loads into the running kernel", 10),
    ("init_message", "Logs the greeting at info level when loaded", 15),
    ("exit_message", "Unloads cleanly and logs the farewell at info level", 15),
    ("modinfo", "modinfo shows a GPL-compatible licence and an author", 15),
    ("license_taint", "Loading it adds no taint beyond out-of-tree/unsigned", 10),
]
# Only your own guest can have the module left loaded; Submit grades a clean one.
CHECK_ONLY = ("not_left_loaded",)


@dataclass
class Context:
    """What the hidden checks get: the module this checker built."""

    ko: Path | None = None  # the copy in this checker's root-only folder
    loaded_by_us: bool = False
    was_loaded: bool = False
    init_records: list[KmsgRecord] = field(default_factory=list)
    taint: str = ""


def source_dir() -> Path:
    return student_home() / "hello"


def kernel_build_dir() -> Path:
    return Path("/lib/modules") / os.uname().release / "build"


def check_not_left_loaded() -> str:
    if MODULE not in loaded_modules():
        return "No module called hello was loaded when the check started."
    result = run([RMMOD, MODULE], timeout=30)
    after = (
        "The checker unloaded it so that it could test a fresh build"
        if result.ok
        else "The checker could not unload it either (" + tail(result.output, 2) + ")"
    )
    raise Fail(
        "A module called hello was still loaded when the check started. Always unload "
        f"your module with `rmmod hello` when you are done testing. {after}."
    )


# -- reading the student's folder -------------------------------------------------


@dataclass
class Sources:
    files: list[Path] = field(default_factory=list)  # regular files, top level, included
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    def names(self) -> list[str]:
        return [p.name for p in self.files]

    def note_text(self) -> str:
        return (" " + " ".join(self.notes)) if self.notes else ""


def included(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in INCLUDE)


def read_sources(src: Path) -> Sources:
    """The files Submit would carry, as Submit would see them: regular files
    whose names match INCLUDE (symbolic links, devices and FIFOs left out),
    within the same size and count limits. Only the top level is built."""
    if src.is_symlink() or not src.is_dir():
        raise Fail(f"There is no folder {src}. Put hello.c and its Makefile there.")
    found = Sources()
    total = count = 0
    for folder, dirs, names in os.walk(src):  # never follows links
        dirs.sort()
        for name in sorted(names):
            if not included(name):
                continue
            path = Path(folder) / name
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
                found.notes.append(
                    f"{path} was left out: it is {kind}, and only regular files are graded."
                )
                continue
            total += info.st_size
            count += 1
            if total > MAX_BYTES:
                raise Fail(
                    f"Your {src} holds more than {MAX_BYTES >> 20} MiB of sources (.c, .h and "
                    "make files); the limit is 1.0 MiB, and Submit would refuse it. Remove what "
                    "does not need grading."
                )
            if count > MAX_FILES:
                raise Fail(
                    f"Your {src} holds more than {MAX_FILES} source files; the limit is "
                    f"{MAX_FILES}, and Submit would refuse it."
                )
            if Path(folder) == src and not name.endswith(".mod.c"):  # .mod.c: kbuild's own
                found.files.append(path)
    return found


# -- building, as the student user ---------------------------------------------------


def probe_makefile(folder: Path, kbuild_file: str) -> str:
    """A make file that reads the student's the way kbuild does (as a module
    folder's kbuild file) and prints the variables that define the module."""
    release = os.uname().release
    kdir = kernel_build_dir()
    parts = " ".join(f"{MODULE}-{suffix}" for suffix in ("objs", "y", "m"))
    return (
        f"KERNELRELEASE := {release}\n"
        f"srctree := {kdir}\nobjtree := {kdir}\n"
        f"src := {folder}\nobj := {folder}\nM := {folder}\nKBUILD_EXTMOD := {folder}\n"
        f"include {folder}/{kbuild_file}\n"
        "kernellab-probe:\n"
        f"\t$(info {PROBE_MARK} obj-m $(obj-m))\n"
        f"\t$(foreach v,{parts},$(info {PROBE_MARK} $(v) $($(v))))\n"
        "\t@:\n"
    )


def module_parts(sources: Sources) -> list[str]:
    """The objects the student's Makefile (or Kbuild file) makes hello.ko of,
    read by running make on it as the student user, in a throwaway folder."""
    names = set(sources.names())
    kbuild_file = next((n for n in KBUILD_FILES if n in names), None)
    if kbuild_file is None:
        other = [n for n in ("makefile", "GNUmakefile") if n in names]
        raise Fail(
            f"No Makefile (or Kbuild file) was found in {source_dir()}."
            + (
                f" kbuild reads only a file called Makefile or Kbuild, not {other[0]}."
                if other
                else ""
            )
        )
    with student_dir("hello-probe-") as folder:
        for path in sources.files:
            copy_to_student_dir(path, folder)
        probe = write_for_student(
            folder / "kernellab-probe.mk", probe_makefile(folder, kbuild_file)
        )
        result = run_as_student(
            [MAKE, "-r", "-R", "--no-print-directory", "-f", probe.name, "kernellab-probe"],
            cwd=folder,
            timeout=PROBE_TIMEOUT,
            output_limit=64 << 10,
        )
    if result.returncode is None:
        raise Fail(f"make took longer than {PROBE_TIMEOUT} seconds to read your {kbuild_file}.")
    values: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():  # the last word wins, as in make
        words = line.split()
        if len(words) >= 2 and words[0] == PROBE_MARK:
            values[words[1]] = words[2:]
    if not result.ok or "obj-m" not in values:
        raise Fail(
            f"make could not read your {kbuild_file} (exit status {result.returncode}):\n"
            + tail(result.output.replace(str(folder), str(source_dir())), 6)
        )
    modules = values["obj-m"]
    if f"{MODULE}.o" not in modules:
        named = f" It names {' '.join(modules)}." if modules else " It names no module at all."
        raise Fail(
            f"Your {kbuild_file} does not ask kbuild for hello.ko: its obj-m line must name "
            f"hello.o (`obj-m := hello.o`).{named}"
        )
    parts = [word for suffix in ("objs", "y", "m") for word in values.get(f"{MODULE}-{suffix}", [])]
    if not parts:
        if "hello.c" not in names:
            raise Fail(
                "`obj-m := hello.o` builds hello.ko from hello.c, and there is no regular file "
                f"hello.c in {source_dir()}."
            )
        return []
    for part in parts:
        if not PART.match(part) or part == f"{MODULE}.o":
            raise Fail(
                f"Your {kbuild_file} makes hello.ko of {' '.join(parts)}: each part must be a "
                "plain `name.o` for a name.c in the same folder, and none can be called hello.o "
                "(a module made of several files needs other names for them)."
            )
        if part[:-2] + ".c" not in names:
            raise Fail(
                f"Your {kbuild_file} makes hello.ko of {' '.join(parts)}, but there is no "
                f"regular file {part[:-2]}.c in {source_dir()}."
            )
    return list(dict.fromkeys(parts))


def write_for_student(path: Path, text: str) -> Path:
    """A file of the checker's that the student user must be able to read
    (the checker runs with umask 077)."""
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def kbuild_file(parts: list[str]) -> str:
    text = f"# Written by the KernelLab checker.\nobj-m := {MODULE}.o\n"
    if parts:
        text += f"{MODULE}-y := {' '.join(parts)}\n"
    return text


def copy_out(path: Path, target: Path, limit: int) -> None:
    """Copy a regular file that the student user wrote, never following a
    link, into ``target`` (this checker's own folder)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise Fail(f"The build's {path.name} cannot be read ({exc.strerror}).") from exc
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise Fail(f"The build's {path.name} is not a regular file of a sensible size.")
        with open(target, "xb") as out:
            shutil.copyfileobj(source, out)
    os.chmod(target, 0o600)


def module_field(ko: Path, name: str) -> list[str]:
    result = run([MODINFO, "-F", name, str(ko)], timeout=30)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def verify_module(ko: Path) -> None:
    """Cheap evidence that the copy is kbuild's module for this kernel."""
    with open(ko, "rb") as handle:
        if handle.read(4) != b"\x7fELF":
            raise Fail("The build's hello.ko is not an ELF file.")
    names = module_field(ko, "name")
    if names != [MODULE]:
        raise Fail(f"The build's hello.ko calls itself {' '.join(names) or 'nothing'}, not hello.")
    vermagic = module_field(ko, "vermagic")
    if not vermagic or vermagic[0].split()[0] != os.uname().release:
        raise Fail(
            "The build's hello.ko was not built for the running kernel "
            f"({os.uname().release}): its vermagic is {vermagic[0] if vermagic else 'missing'}."
        )


def check_builds(private: Path, ctx: Context) -> str:
    sources = read_sources(source_dir())
    try:
        parts = build(sources, private, ctx)
    except Fail as failure:
        raise Fail(str(failure) + sources.note_text()) from None
    made_of = ", ".join(p[:-2] + ".c" for p in parts) if parts else "hello.c"
    return (
        f"Your sources built hello.ko (from {made_of}) against kernel {os.uname().release}."
        + sources.note_text()
    )


def build(sources: Sources, private: Path, ctx: Context) -> list[str]:
    if not any(path.suffix == ".c" for path in sources.files):
        raise Fail(
            f"No C source file was found in {source_dir()}. The module must be built from your "
            "own hello.c; a ready-made .ko does not count."
        )
    if not kernel_build_dir().is_dir():
        raise Fail(f"The kernel headers are missing ({kernel_build_dir()}); tell your instructor.")
    parts = module_parts(sources)
    with student_dir("hello-build-") as folder:
        for path in sources.files:
            if path.suffix in (".c", ".h"):
                copy_to_student_dir(path, folder)
        write_for_student(folder / "Kbuild", kbuild_file(parts))
        result = run_as_student(
            [MAKE, "-C", str(kernel_build_dir()), f"M={folder}", "modules"],
            cwd=folder,
            timeout=BUILD_TIMEOUT,
        )
        # Every process of the student user is dead now: what is in the
        # folder stays as it is while it is read.
        if result.returncode is None:
            raise Fail(f"Building your sources took longer than {BUILD_TIMEOUT} seconds.")
        if not result.ok:
            hint = ""
            if "missing MODULE_LICENSE" in result.output:
                hint = (
                    " The kernel's build refuses modules without a licence: add "
                    'MODULE_LICENSE("GPL") to hello.c.'
                )
            raise Fail(
                "Your sources did not build against the running kernel "
                f"(`make` exited with {result.returncode}).{hint}\nLast lines of the build:\n"
                + tail(result.output.replace(str(folder), str(source_dir())))
            )
        for product in (f"{MODULE}.mod.c", f"{MODULE}.o", f"{MODULE}.ko"):
            if not (folder / product).is_file() or (folder / product).is_symlink():
                raise Fail(f"The build did not leave {product} where kbuild writes it.")
        ko = private / f"{MODULE}.ko"
        copy_out(folder / f"{MODULE}.ko", ko, MAX_KO_BYTES)
    verify_module(ko)
    ctx.ko = ko
    return parts


# -- loading and unloading what this checker built ------------------------------


def check_loads(kmsg: Kmsg, ctx: Context) -> str:
    assert ctx.ko is not None
    if MODULE in loaded_modules():
        raise Fail("A module called hello is already loaded and could not be unloaded.")
    kmsg.drain()  # only what the kernel logs while our insmod runs counts
    result = run([INSMOD, str(ctx.ko)], timeout=60)
    ctx.init_records = kmsg.read()
    if MODULE in loaded_modules():
        ctx.loaded_by_us = ctx.was_loaded = True
        ctx.taint = module_taint(MODULE)
    if not result.ok:
        raise Fail(
            "insmod refused the module built from your sources: "
            + (tail(result.output, 3) or f"exit status {result.returncode}")
            + ". Does hello_init() return 0?"
        )
    if not ctx.loaded_by_us:
        raise Fail("insmod succeeded but the module does not appear in /proc/modules.")
    problems = trouble(ctx.init_records)
    if problems:
        raise Fail("Loading the module produced kernel warnings: " + problems[0])
    return "insmod loaded the module built from your sources."


def at_info_level(records: list[KmsgRecord], pattern: re.Pattern[str], what: str) -> str:
    hits = [r for r in records if pattern.search(r.text)]
    if not hits:
        raise Fail(f"no line containing {what!r}")
    for record in hits:
        if record.level == INFO_LEVEL:
            return record.text.strip()
    level = hits[0].level
    raise Fail(
        f"the line {hits[0].text.strip()!r} was logged at level {level} "
        f"({LEVEL_NAMES[level]}), not at info level (6): log it with pr_info(), which is "
        "printk(KERN_INFO ...)"
    )


def check_init_message(ctx: Context) -> str:
    try:
        line = at_info_level(ctx.init_records, GREETING, "Hello, KernelLab!")
    except Fail as why:
        seen = "; ".join(r.text for r in ctx.init_records if "taint" not in r.text)[:300]
        raise Fail(
            f"Loading the module logged {why}. Log the greeting from your init function with "
            "pr_info()." + (f" The kernel logged: {seen}" if seen else "")
        ) from None
    return f"Loading the module logged, at info level: {line}"


def check_exit_message(kmsg: Kmsg, ctx: Context) -> str:
    kmsg.drain()  # only what the kernel logs while our rmmod runs counts
    result = run([RMMOD, MODULE], timeout=60)
    records = kmsg.read()
    still_loaded = MODULE in loaded_modules()
    if not still_loaded:
        ctx.loaded_by_us = False
    if not result.ok or still_loaded:
        raise Fail(
            "rmmod could not unload the module: "
            + (tail(result.output, 3) or "it is still in /proc/modules")
            + ". Does your module declare an exit function with module_exit()?"
        )
    problems = trouble(records)
    if problems:
        raise Fail("Unloading the module produced kernel warnings: " + problems[0])
    try:
        line = at_info_level(records, FAREWELL, "Goodbye, KernelLab!")
    except Fail as why:
        raise Fail(
            f"The module unloaded, but it logged {why}. Log the farewell from your exit "
            "function with pr_info()."
        ) from None
    return f"rmmod unloaded the module, which logged, at info level: {line}"


def check_modinfo(ctx: Context) -> str:
    if ctx.ko is None:
        raise Fail("There is no module built from your sources to inspect.")
    licenses = module_field(ctx.ko, "license")
    authors = module_field(ctx.ko, "author")
    if not licenses:
        raise Fail('modinfo shows no licence: add MODULE_LICENSE("GPL").')
    if not all(value in GPL_COMPATIBLE for value in licenses):
        raise Fail(
            f"modinfo shows the licence {licenses[0]!r}, which is not GPL-compatible: the "
            'kernel treats such a module as proprietary. Use MODULE_LICENSE("GPL").'
        )
    if not authors:
        raise Fail('modinfo shows no author: add MODULE_AUTHOR("Your Name").')
    return f"modinfo shows license: {licenses[0]} and author: {authors[0]}."


def check_license_taint(ctx: Context) -> str:
    if not ctx.was_loaded:
        raise Fail("Not checked: the module built from your sources could not be loaded.")
    letters = set(ctx.taint)
    extra = sorted(letters - EXPECTED_MODULE_TAINT)
    if extra:
        reasons = ", ".join(f"{x} ({TAINT_MEANING.get(x, 'see the kernel docs')})" for x in extra)
        raise Fail(
            f"Loading your module tainted the kernel with {''.join(extra)}: {reasons}. "
            "Out-of-tree (O) and unsigned (E) are expected here; anything else is not."
        )
    shown = ctx.taint or "nothing"
    return f"Your module's taint flags are {shown}: only the expected out-of-tree/unsigned ones."


def main() -> None:
    report = Report(CHECKS, check_only=CHECK_ONLY)
    ctx = Context()
    with report, scratch_dir("hello-module-") as private, Kmsg() as kmsg:
        try:
            if report.runs("not_left_loaded"):
                report.run("not_left_loaded", check_not_left_loaded)
            if report.run("builds", check_builds, private, ctx):
                if report.run("loads", check_loads, kmsg, ctx):
                    report.run("init_message", check_init_message, ctx)
                    report.run("exit_message", check_exit_message, kmsg, ctx)
                else:
                    why = "Not checked: the module did not load."
                    report.skip("init_message", why)
                    report.skip("exit_message", why)
                report.run("license_taint", check_license_taint, ctx)
            else:
                why = "Not checked: your sources did not build into hello.ko."
                for check_id in ("loads", "init_message", "exit_message", "license_taint"):
                    report.skip(check_id, why)
            report.run("modinfo", check_modinfo, ctx)
            report.run_hidden(ctx)
        finally:
            if ctx.loaded_by_us and MODULE in loaded_modules():
                run([RMMOD, MODULE], timeout=30)


if __name__ == "__main__":
    main()
