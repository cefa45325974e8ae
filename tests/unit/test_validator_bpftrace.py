"""The bpftrace validator: what a Submit's bpftrace scripts may do, since the
checker has to run them as root (bpftrace 0.17, the lab image's, refuses any
other user).

Where a comment says what bpftrace did, the script was tried as root against
the lab image's bpftrace 0.17.0 (Debian bookworm) and its 6.1 kernel.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from django.conf import settings

from exercises.artifacts import validators
from exercises.artifacts.files import ArtifactFile
from exercises.artifacts.validators import bpftrace
from exercises.manifest import ArtifactSpec, BpftraceValidatorSpec

EXERCISE = Path(settings.EXERCISES_CATALOGUE_DIR) / "bpftrace-syscalls"
SPEC = BpftraceValidatorSpec(kind="bpftrace")
SCRIPT = "/root/bpftrace/openat_count.bt"
COUNTING = "tracepoint:syscalls:sys_enter_openat\n{\n\t@openat[comm] = count();\n}\n"


def problems(text: str | bytes, path: str = SCRIPT) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return bpftrace.validate([ArtifactFile(path, data)], SPEC)


def refused(text: str | bytes) -> str:
    found = problems(text)
    assert found, f"{text!r} was accepted"
    return " ".join(found)


# -- what is accepted ----------------------------------------------------------------------


def test_the_reference_solution_is_accepted() -> None:
    path = EXERCISE / "solution" / "files" / "root" / "bpftrace" / "openat_count.bt"
    assert problems(path.read_bytes()) == []


def test_the_starter_is_accepted() -> None:
    assert problems((EXERCISE / "starter" / "bpftrace" / "openat_count.bt").read_bytes()) == []


def test_a_script_with_predicates_casts_and_printing_is_accepted() -> None:
    script = r"""#!/usr/bin/env bpftrace
    BEGIN { printf("Tracing openat()... Hit Ctrl-C to end.\n"); }
    tracepoint:syscalls:sys_enter_openat, tracepoint:syscalls:sys_enter_open
    /pid != 1 && comm != "systemd"/
    {
        @openat[comm] = count();
        @start[tid] = nsecs;
        @name = str(args->filename);
        $task = (struct task_struct *)curtask;
        @parent[$task->real_parent->comm] = count();
        if ($task->pid > 100) { @big = count(); }
    }
    kretprobe:do_sys_openat2 /@start[tid]/
    { @lat = hist(nsecs - @start[tid]); delete(@start[tid]); }
    interval:s:5 { print(@openat); time("%H:%M:%S\n"); }
    kprobe:do_sys_openat2+0 { @k = count(); }
    kfunc:do_sys_openat2 { @f[kstack(3)] = count(); }
    END { clear(@start); printf("%d %s\n", 0x10 + 1_000 + 2e3, strerror(2)); }
    """
    assert problems(script) == []


def test_words_in_comments_and_strings_are_not_calls() -> None:
    # The lexer drops comments and strings before anything is called:
    # bpftrace printed 'cat("/etc/shadow")' and read no file.
    script = (
        '// cat("/etc/shadow")\n/* system("id"); #include <x.h>\n */\n'
        'BEGIN { printf("cat(\\"/etc/shadow\\") #include\\n"); }\n'
    )
    assert problems(script) == []


def test_kernel_tracepoints_named_like_refused_builtins_are_accepted() -> None:
    # ':signal:signal_generate' is one probe-name token, not a call.
    assert problems("tracepoint:signal:signal_generate { @[comm] = count(); }") == []


# -- reading files -------------------------------------------------------------------------


def test_cat_is_refused() -> None:
    # bpftrace printed {"type": "cat", "data": "<the file>"}: any file, as root.
    assert "cat(), which reads a file" in refused('BEGIN { cat("/etc/shadow"); }')


def test_cat_with_a_comment_and_a_newline_before_its_parenthesis_is_refused() -> None:
    # Still a call to bpftrace: it read the file.
    assert "cat()" in refused('BEGIN { cat /* x */\n ("/proc/1/environ"); }')


def test_cat_of_a_formatted_path_is_refused() -> None:
    assert "cat()" in refused('BEGIN { cat("/proc/%d/environ", curtask->real_parent->tgid); }')


def test_an_include_is_refused() -> None:
    # bpftrace handed it to clang, whose errors quoted the file's first words.
    assert "preprocessor line" in refused('#include "/etc/shadow"\n' + COUNTING)


def test_an_include_of_a_kernel_header_is_refused_too() -> None:
    assert "preprocessor line" in refused("#include <linux/sched.h>\n" + COUNTING)


def test_a_define_that_hides_cat_is_refused() -> None:
    # bpftrace expanded X in the probe and printed /proc/1/environ.
    found = refused('#define X cat("/proc/1/environ")\nBEGIN { X; }\n')
    assert "preprocessor line" in found
    assert "line 1" in found


def test_a_preprocessor_line_after_code_is_refused() -> None:
    assert "preprocessor line" in refused('BEGIN { exit(); } #include "/etc/shadow"')


def test_an_include_inside_a_struct_definition_is_refused() -> None:
    # clang preprocessed it: the definition's body is C, '#' lines included.
    found = refused('struct x { int a;\n#include "/etc/shadow"\n};\n' + COUNTING)
    assert "preprocessor line" in found


def test_a_digraph_include_inside_a_struct_definition_is_refused() -> None:
    # '%:' is '#' to clang: it read the file.
    found = refused('struct x { int a;\n%:include "/etc/shadow"\n};\n' + COUNTING)
    assert "preprocessor line" in found


def test_a_struct_definition_is_refused() -> None:
    found = refused('struct x { int a; _Pragma("GCC dependency \\"/etc/shadow\\"") };\nBEGIN {}')
    assert "C struct definition" in found


def test_pragma_is_refused() -> None:
    assert "_Pragma" in refused('BEGIN { _Pragma("x"); }')


def test_cgroupid_is_refused() -> None:
    assert "cgroupid(), which looks up a file" in refused('BEGIN { @ = cgroupid("/etc"); }')


# -- writing, running, signalling ----------------------------------------------------------


def test_system_is_refused() -> None:
    # Also refused by bpftrace itself without --unsafe ("unsafe function").
    assert "system(), which runs a program" in refused('BEGIN { system("id"); }')


def test_signal_is_refused() -> None:
    assert "signal()" in refused("tracepoint:syscalls:sys_enter_openat { signal(9); }")


def test_override_is_refused() -> None:
    assert "override()" in refused("kprobe:__x64_sys_openat { override(-1); }")


def test_skboutput_is_refused() -> None:
    # Writes a pcap file at any path; not an --unsafe builtin.
    assert "skboutput(), which writes a file" in refused(
        'kprobe:dev_queue_xmit { $r = skboutput("/etc/cron.d/x", arg0, 64, 0); }'
    )


def test_debugf_is_refused() -> None:
    assert "debugf()" in refused('BEGIN { debugf("x"); }')


def test_an_unknown_function_is_refused() -> None:
    # An allow list: a builtin that a later bpftrace brings is refused until
    # someone has read what it does.
    assert "readfile(), which is not one of" in refused('BEGIN { readfile("/etc/shadow"); }')


# -- probes --------------------------------------------------------------------------------


def test_a_uprobe_is_refused() -> None:
    found = refused("uprobe:/usr/bin/python3.11:PyUnicode_FromString { @[str(arg0)] = count(); }")
    assert "probe of type uprobe" in found


def test_a_uprobe_spelled_in_two_words_is_refused() -> None:
    # bpftrace glues an attach point together from its tokens: 'u probe' is 'uprobe'.
    assert "probe of type uprobe" in refused("u probe:/bin/sh:main { }")


def test_short_user_space_probe_types_are_refused() -> None:
    for probe in ("u:/bin/sh:main", "ur:/bin/sh:main", "U:/bin/sh:probe", "usdt:/bin/sh:p"):
        assert "probe of type" in refused(f"{probe} {{ @x = count(); }}"), probe


def test_a_watchpoint_is_refused() -> None:
    assert "probe of type watchpoint" in refused("watchpoint:0x10000000:8:w { }")


def test_an_iterator_is_refused() -> None:
    # bpftrace pinned it: "Program pinned to /sys/fs/bpf/x", left after it exited.
    assert "probe of type iter" in refused("iter:task:/sys/fs/bpf/x { }")


def test_an_unknown_probe_type_is_refused() -> None:
    assert "of a type a graded script may not use" in refused("rawtracepoint:sys_enter { }")


def test_a_probe_with_a_quoted_name_is_refused() -> None:
    assert "quoted part" in refused('kprobe:"vfs_open" { }')


def test_a_refused_probe_in_a_list_of_probes_is_refused() -> None:
    found = refused(
        "tracepoint:syscalls:sys_enter_openat,\nuprobe:/bin/sh:main { @[comm] = count(); }"
    )
    assert "probe of type uprobe" in found
    assert "line 2" in found


# -- what the lexer would read differently -------------------------------------------------


def test_a_nul_byte_is_refused() -> None:
    # bpftrace reads up to it and would compile less than was looked at.
    assert "NUL" in refused(COUNTING.encode() + b"\0" + b'BEGIN { cat("/etc/shadow"); }')


def test_text_that_is_not_utf8_is_refused() -> None:
    assert "not UTF-8" in refused(b"BEGIN { @x = 1; } \xff\xfe")


def test_an_unterminated_string_is_refused() -> None:
    assert "string that does not end" in refused('BEGIN { printf("abc\n"); }')


def test_an_unterminated_comment_is_refused() -> None:
    assert "comment that never ends" in refused('/* BEGIN { cat("/etc/shadow"); }')


def test_a_character_outside_the_language_is_refused() -> None:
    assert "character bpftrace does not accept" in refused("BEGIN { @x = '1'; }")


def test_an_interpreter_line_after_the_first_is_refused() -> None:
    assert "preprocessor line" in refused("BEGIN {}\n#!/bin/sh\n")


def test_the_same_problem_on_several_lines_is_said_once() -> None:
    found = problems('BEGIN { cat("/a"); }\nEND { cat("/b"); }\n')
    assert found == [
        f"{SCRIPT}, lines 1 and 2: cat(), which reads a file: "
        "a graded script may only trace the kernel and print"
    ]


def test_at_most_five_problems_are_listed() -> None:
    script = "".join(f'BEGIN {{ cat("/{n}"); }}\n' for n in range(3)) + "x"
    files = [ArtifactFile(f"/root/bpftrace/{n}.bt", script.encode()) for n in range(8)]
    assert len(bpftrace.validate(files, SPEC)) == bpftrace.MAX_REPORTED


# -- the exercise ---------------------------------------------------------------------------


def test_the_exercise_declares_this_validator() -> None:
    manifest = tomllib.loads((EXERCISE / "exercise.toml").read_text())
    (artifact,) = manifest["grading"]["artifacts"]
    spec = ArtifactSpec.model_validate(artifact)
    assert spec.validator == SPEC
    assert validators.validate(spec, [ArtifactFile(SCRIPT, b'BEGIN { cat("/x"); }')])


@pytest.mark.parametrize(
    "variant",
    sorted(
        path.parent.name
        for path in (EXERCISE / "wrong").glob("*/expect.toml")
        if (refusal := tomllib.loads(path.read_text()).get("refused")) and refusal != "limit"
    ),
)
def test_each_refused_wrong_answer_is_refused_with_its_reason(variant: str) -> None:
    expect = tomllib.loads((EXERCISE / "wrong" / variant / "expect.toml").read_text())
    script = EXERCISE / "wrong" / variant / "files" / "root" / "bpftrace" / "openat_count.bt"
    assert expect["refused"] in refused(script.read_bytes())


def test_every_wrong_answer_graded_at_submit_passes_the_validator() -> None:
    for path in (EXERCISE / "wrong").glob("*/expect.toml"):
        expect = tomllib.loads(path.read_text())
        if expect.get("refused") or "submit" not in expect.get("modes", ["submit"]):
            continue
        for script in (path.parent / "files").rglob("*.bt"):
            assert problems(script.read_bytes()) == [], script
