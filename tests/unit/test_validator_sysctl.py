"""The sysctl validator: what a Submit's sysctl.d files may set before a
grading guest's boot applies them as root.

Every spelling below was tried against systemd-sysctl 252 and the 6.1 kernel
of the lab image (Debian bookworm); the comments say what the guest did.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from django.conf import settings

from exercises.artifacts import archive, validators
from exercises.artifacts.files import ArtifactFile
from exercises.artifacts.validators import sysctl
from exercises.manifest import ArtifactSpec, SysctlValidatorSpec

EXERCISE = Path(settings.EXERCISES_CATALOGUE_DIR) / "sysctl-tuning"
SPEC = SysctlValidatorSpec(kind="sysctl", keys=["vm.*", "net.ipv4.*", "net.ipv6.*"])
CONF = "/etc/sysctl.d/60-kernellab.conf"


def problems(text: str | bytes, path: str = CONF, spec: SysctlValidatorSpec = SPEC) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return sysctl.validate([ArtifactFile(path, data)], spec)


def refused(text: str | bytes, path: str = CONF) -> str:
    found = problems(text, path)
    assert found, f"{text!r} was accepted"
    return " ".join(found)


@functools.cache
def checker_model() -> ModuleType:
    """The exercise's check/sysctl_config.py (it runs in the guest)."""
    name = "kernellab_sysctl_tuning_model"
    spec = importlib.util.spec_from_file_location(name, EXERCISE / "check" / "sysctl_config.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


# -- what is accepted ----------------------------------------------------------------------


def test_the_reference_solution_is_accepted() -> None:
    path = EXERCISE / "solution" / "files" / "etc" / "sysctl.d" / "60-kernellab.conf"
    assert problems(path.read_bytes()) == []


def test_a_misspelt_key_of_the_taught_family_is_graded_not_refused() -> None:
    assert problems("vm.swapiness = 10\nvm.dirty_ratio = 15\nnet.ipv4.ip_foward = 1\n") == []


def test_slash_spelling_leading_slash_and_doubled_dots_are_the_same_key() -> None:
    # systemd-sysctl set vm.swappiness from each of these lines.
    assert problems("vm/swappiness = 10\n/vm/swappiness = 10\nvm..swappiness = 10\n") == []


def test_a_glob_inside_the_allowed_family_is_accepted() -> None:
    assert problems("net.ipv4.conf.*.forwarding = 1\nvm.dirty_* = 15\n") == []


def test_comments_blank_lines_and_non_assignments_are_not_looked_at() -> None:
    text = "# kernel.modprobe = /x\n   ; kernel.core_pattern = |/x\n\nkernel.modprobe\n"
    assert problems(text) == []


def test_a_negative_match_line_only_excludes_a_key_from_globs() -> None:
    assert problems("-kernel.modprobe\n") == []


def test_a_file_not_named_conf_is_data_the_boot_never_reads() -> None:
    text = "kernel.modprobe = /etc/sysctl.d/helper\n"
    assert problems(text, path="/etc/sysctl.d/README.sysctl") == []
    assert problems(text, path="/etc/sysctl.d/60-kernellab.conf.bak") == []


def test_an_empty_key_is_graded_not_refused() -> None:
    # systemd-sysctl only warns; the checker's clean_config explains it.
    assert problems("= 10\n") == []


def test_a_key_behind_a_byte_order_mark_is_graded_not_refused() -> None:
    # systemd-sysctl does not skip a BOM: `<BOM>vm.swappiness` names nothing
    # (tried: "No such file or directory"), so the line only fails.
    assert problems(b"\xef\xbb\xbfvm.swappiness = 10\n") == []
    assert problems(b"\xef\xbb\xbfkernel.modprobe = /x\n") == []
    assert "`..`" in refused(b"\xef\xbb\xbf/../kernel/modprobe = /x\n")


def test_a_spec_pattern_may_use_slashes() -> None:
    spec = SysctlValidatorSpec(kind="sysctl", keys=["vm/swappiness"])
    assert problems("vm.swappiness = 10\n", spec=spec) == []
    assert problems("vm.dirty_ratio = 15\n", spec=spec)


def test_the_platform_dispatches_to_this_validator() -> None:
    spec = ArtifactSpec(path="/etc/sysctl.d", validator=SPEC)
    files = [ArtifactFile(CONF, b"kernel.modprobe = /x\n")]
    assert validators.validate(spec, files) == sysctl.validate(files, SPEC)


# -- what is refused -------------------------------------------------------------------------


def test_kernel_modprobe_is_refused_with_file_line_and_key() -> None:
    message = refused("vm.swappiness = 10\nkernel.modprobe = /etc/sysctl.d/helper\n")
    assert f"{CONF} line 2" in message
    assert "kernel.modprobe" in message
    assert "vm.*, net.ipv4.*, net.ipv6.*" in message


def test_a_core_pattern_pipe_is_refused() -> None:
    assert "kernel.core_pattern" in refused("kernel.core_pattern = |/etc/sysctl.d/x %p\n")


@pytest.mark.parametrize(
    "line",
    [
        "kernel.usermodehelper.bset = 4294967295 4294967295",
        "kernel.hotplug = /etc/sysctl.d/x",
        "kernel.poweroff_cmd = /etc/sysctl.d/x",
        "fs.binfmt_misc.register = :x:E::conf::/etc/sysctl.d/x:",
        "fs.suid_dumpable = 2",
        "kernel.printk = 3 4 1 3",
        "dev.tty.ldisc_autoload = 1",
    ],
)
def test_keys_outside_the_taught_families_are_refused(line: str) -> None:
    assert line.split(" =")[0] in refused(line + "\n")


def test_the_slash_spelling_of_a_forbidden_key_is_refused() -> None:
    assert "kernel.modprobe" in refused("kernel/modprobe = /x\n")
    assert "kernel.modprobe" in refused("/kernel/modprobe = /x\n")
    # A leading '.' is a separator too: systemd-sysctl set vm.swappiness from `.vm.swappiness`.
    assert "kernel.modprobe" in refused(".kernel.modprobe = /x\n")


def test_a_leading_dash_and_blanks_do_not_hide_a_key() -> None:
    assert "kernel.modprobe" in refused("  -  kernel.modprobe\t=\t/x  \n")


def test_a_nul_byte_starts_a_new_line() -> None:
    # systemd-sysctl applied `vm.dirty_ratio = 17` written after a NUL on the
    # line of `vm.swappiness = 11`: what follows a NUL is a line of its own.
    message = refused(b"vm.swappiness = 10\0kernel.modprobe = /etc/sysctl.d/helper\n")
    assert "line 1" in message
    assert "kernel.modprobe" in message


def test_a_carriage_return_starts_a_new_line() -> None:
    assert "kernel.core_pattern" in refused(b"vm.swappiness = 10\rkernel.core_pattern = |/x\n")


def test_invalid_utf8_does_not_hide_what_follows() -> None:
    assert "kernel.modprobe" in refused(b"vm.swappiness = \xff\xfe\xe2\nkernel.modprobe=/x\n")


def test_dot_dot_in_the_slash_spelling_is_refused() -> None:
    # vm/../kernel/modprobe names /proc/sys/kernel/modprobe. systemd-sysctl
    # 252 refused to write it; the validator does not rely on that.
    assert "`..`" in refused("vm/../kernel/modprobe = /etc/sysctl.d/helper\n")


def test_dot_dot_in_the_dotted_spelling_is_refused() -> None:
    # In the dotted spelling a '/' is a literal dot: vm.//.kernel.modprobe is
    # vm/../kernel/modprobe, which fnmatch("vm.*") would have let through.
    assert "`..`" in refused("vm.//.kernel.modprobe = /etc/sysctl.d/helper\n")


def test_a_glob_reaching_outside_the_family_is_refused() -> None:
    assert refused("*.modprobe = /x\n")
    assert refused("v?.swappiness = 10\n")
    assert refused("*mod* = 1\n")


def test_a_glob_on_a_hidden_part_is_refused() -> None:
    # A '.*' part can match '..' in glob(3).
    assert refused("vm/.*/kernel/modprobe = /x\n")


def test_braces_and_brackets_are_refused() -> None:
    # systemd-sysctl expanded `vm.{swappiness,dirty_ratio}* = 17` into both keys.
    assert "[ ] { }" in refused("vm.{swappiness,x/../../kernel/modprobe}* = 17\n")
    assert "[ ] { }" in refused("vm.swappines[s] = 10\n")


def test_an_overlong_key_is_refused_without_deep_recursion() -> None:
    assert "longer than any sysctl name" in refused("vm/" + "*" * 5000 + " = 1\n")


def test_names_are_case_sensitive() -> None:
    # systemd-sysctl: VM/swappiness does not exist.
    assert "VM.swappiness" in refused("VM.swappiness = 10\n")


def test_a_dot_file_ending_in_conf_is_read_too() -> None:
    # The boot skips hidden names; refusing them anyway costs nothing.
    assert refused("kernel.modprobe = /x\n", path="/etc/sysctl.d/.hidden.conf")


def test_a_conf_file_in_a_subfolder_is_read_too() -> None:
    assert refused("kernel.modprobe = /x\n", path="/etc/sysctl.d/sub/x.conf")


def test_an_old_format_sysctl_conf_artifact_is_read() -> None:
    assert refused("kernel.modprobe = /x\n", path="/etc/sysctl.conf")


def test_the_report_is_capped() -> None:
    found = problems("".join(f"kernel.x{i} = 1\n" for i in range(20)))
    assert len(found) == sysctl.MAX_REPORTED + 2
    assert "15 more" in found[-2]


def test_every_file_is_looked_at() -> None:
    files = [
        ArtifactFile("/etc/sysctl.d/10-a.conf", b"vm.swappiness = 10\n"),
        ArtifactFile("/etc/sysctl.d/90-b.conf", b"kernel.modprobe = /x\n"),
    ]
    assert "90-b.conf line 1" in " ".join(sysctl.validate(files, SPEC))


# -- glob inclusion ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "key", "covered"),
    [
        ("vm/*", "vm/swappiness", True),
        ("vm/*", "vm/*", True),
        ("vm/*", "vm/dirty_*", True),
        ("net/ipv4/*", "net/ipv4/conf/*/forwarding", True),
        ("vm/*", "*", False),
        ("vm/*", "v*", False),
        ("vm/*", "v?/swappiness", False),
        ("vm/?", "vm/*", False),
        ("vm/??", "vm/?", False),
        ("net/ipv4/conf/*/forwarding", "net/ipv4/conf/*/forwarding", True),
        ("net/ipv4/conf/*/forwarding", "net/ipv4/conf/*", False),
        ("vm/dirty_*", "vm/dirty_?atio", True),
        ("vm/dirty_ratio", "vm/dirty_?atio", False),
    ],
)
def test_glob_inclusion(pattern: str, key: str, covered: bool) -> None:
    assert sysctl._covers(pattern, key) is covered


# -- the checker agrees with the platform -------------------------------------------------------


def test_the_exercise_declares_this_validator_and_collects_only_etc_sysctl_d() -> None:
    manifest = tomllib.loads((EXERCISE / "exercise.toml").read_text())
    artifacts = manifest["grading"]["artifacts"]
    assert [a["path"] for a in artifacts] == ["/etc/sysctl.d"]
    assert artifacts[0]["validator"] == {"kind": "sysctl", "keys": SPEC.keys}


def test_the_checker_mirrors_the_exercise_caps_and_keys() -> None:
    model = checker_model()
    artifact = tomllib.loads((EXERCISE / "exercise.toml").read_text())["grading"]["artifacts"][0]
    assert artifact["validator"]["keys"] == model.ALLOWED_KEYS
    assert artifact["max_bytes"] == model.SUBMIT_MAX_BYTES
    assert artifact["max_files"] == model.SUBMIT_MAX_FILES


def test_the_checker_mirrors_the_names_submit_copies() -> None:
    assert checker_model().SUBMIT_NAME.pattern == archive.SAFE_PART.pattern


LINES = [
    "vm.swappiness = 10",
    "vm/swappiness = 10",
    "/vm/swappiness = 10",
    ".vm.swappiness = 10",
    "vm..swappiness = 10",
    "vm./.swappiness = 10",
    "-vm.swappiness = 10",
    "net.ipv4.conf.eth0/100.forwarding = 1",
    "net.ipv4.conf.*.forwarding = 1",
    "vm.dirty_* = 15",
    "kernel.modprobe = /x",
    "kernel/modprobe = /x",
    "vm/../kernel/modprobe = /x",
    "vm.//.kernel.modprobe = /x",
    "vm/.*/kernel/modprobe = /x",
    "vm.{a,b}* = 1",
    "vm.swappines[s] = 1",
    "*.modprobe = /x",
    "v?.swappiness = 1",
    "VM.swappiness = 1",
    "= 1",
    "\ufeffvm.swappiness = 1",
    "vm/" + "*" * 300 + " = 1",
]


@pytest.mark.parametrize("line", LINES)
def test_the_checker_reads_a_key_as_the_validator_does(line: str) -> None:
    model = checker_model()
    [item] = model.parse_text(line.encode() + b"\n", Path(CONF)).assignments or [None]
    [(_number, key)] = sysctl.assignments(line.encode() + b"\n")
    if item is None:  # the checker reports an empty key as a problem
        assert key.path == ""
        return
    # The checker decodes UTF-8, the validator latin-1: compare the bytes.
    assert item.key.encode("utf-8", "surrogateescape") == key.path.encode("latin-1")
    assert model.key_allowed(item.key) == (
        sysctl.key_problem(key, [sysctl.normalise(p) for p in SPEC.keys]) is None
    )
