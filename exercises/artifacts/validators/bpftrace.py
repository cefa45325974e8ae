"""bpftrace scripts, read as data before they reach a grading guest.

bpftrace only runs as root (0.17, the image's version, refuses any other
user), so the checker cannot take a student's script out of root's hands: it
runs it by absolute path, without --unsafe, with a clean environment, in a
fresh folder, with a time limit and an output cap, and this validator lets
through only scripts that can do nothing but trace and print. Without
--unsafe bpftrace already refuses system(), signal() and override(). What it
would still do as root, and is refused here:

- read a file: cat(); and the C preprocessor, which bpftrace hands the lines
  starting with '#' and every struct/union/enum definition (#include of any
  file, whose text comes back in clang's error messages; #define, which
  bpftrace also expands in the script itself, so `#define X cat("/etc/shadow")`
  hides the call; the %: digraph and _Pragma, which clang reads as # inside a
  definition). The kernel's BTF gives bpftrace every type a script needs.
- write a file or leave something behind: skboutput() (a pcap file at any
  path), iter: probes (an iterator can be pinned to a file in /sys/fs/bpf that
  outlives bpftrace), debugf() (the kernel's shared trace buffer);
- look outside the kernel: uprobe, uretprobe and usdt probes open any file
  as an ELF binary and attach to the programs running it (the checker's own
  Python included), watchpoints do the same to a process's memory;
  cgroupid() resolves a path at compile time.

The rules are an allow list, so a builtin or a probe type that a later
bpftrace brings is refused until someone reads what it does: a call must be
one of ALLOWED_CALLS and a probe one of ALLOWED_PROBES. The script is read
with bpftrace 0.17's own lexical rules (src/lexer.l: comments, strings,
`:path` tokens, the struct state), so what is judged here is what bpftrace
would compile; wherever the two could disagree (a NUL byte, after which
bpftrace reads nothing; text that is not UTF-8; a string or comment left
open), the script is refused.

What an accepted script can still do, being eBPF loaded by root: read kernel
memory, and the memory of a process that makes a system call (a tracepoint's
arguments point into it). It can see the checker's workload (its name, and
in principle the orders it reads from its pipe), but cannot write to memory
or files, send a signal, or reach the checker's report: bpftrace's output is
a pipe that the checker reads for bpftrace's own map events only.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from exercises.artifacts.files import ArtifactFile
from exercises.manifest import BpftraceValidatorSpec

MAX_REPORTED = 5
ONLY_TRACE = "a graded script may only trace the kernel and print"

# Probe types (and their short forms): kernel functions and tracepoints,
# timers, perf events, and the BEGIN/END blocks.
ALLOWED_PROBES = {
    "BEGIN",
    "END",
    "tracepoint",
    "t",
    "kprobe",
    "k",
    "kretprobe",
    "kr",
    "kfunc",
    "f",
    "kretfunc",
    "fr",
    "profile",
    "p",
    "interval",
    "i",
    "software",
    "s",
    "hardware",
    "h",
}
REFUSED_PROBES = {
    "uprobe": "attaches to a program file",
    "u": "attaches to a program file",
    "uretprobe": "attaches to a program file",
    "ur": "attaches to a program file",
    "usdt": "attaches to a program file",
    "U": "attaches to a program file",
    "watchpoint": "watches a process's memory",
    "w": "watches a process's memory",
    "asyncwatchpoint": "watches a process's memory",
    "aw": "watches a process's memory",
    "iter": "can be pinned to a file that outlives bpftrace",
    "it": "can be pinned to a file that outlives bpftrace",
}

# Builtin functions that only compute, aggregate or print (bpftrace 0.17's
# reference guide, "Functions" and "Map Functions").
ALLOWED_CALLS = {
    "avg",
    "buf",
    "bswap",
    "cgroup_path",
    "clear",
    "count",
    "delete",
    "exit",
    "hist",
    "join",
    "kaddr",
    "kptr",
    "kstack",
    "ksym",
    "lhist",
    "macaddr",
    "max",
    "min",
    "ntop",
    "path",
    "print",
    "printf",
    "pton",
    "reg",
    "sizeof",
    "stats",
    "str",
    "strcontains",
    "strerror",
    "strftime",
    "strncmp",
    "sum",
    "time",
    "uaddr",
    "uptr",
    "ustack",
    "usym",
    "zero",
}
# Words that a '(' may follow without being a call.
PAREN_KEYWORDS = {"if", "while", "for", "unroll", "return", "else"}
REFUSED_CALLS = {
    "cat": "reads a file",
    "system": "runs a program",
    "signal": "sends a signal",
    "override": "changes what a kernel function returns",
    "skboutput": "writes a file",
    "debugf": "writes to the kernel's shared trace buffer",
    "cgroupid": "looks up a file",
    "unwatch": "belongs to watchpoints",
}
# Identifiers that reach the C preprocessor's pragma or include machinery.
PREPROCESSOR_WORDS = {"_Pragma", "__pragma", "__has_include", "__has_include_next", "__has_embed"}
C_DEFINITIONS = {"struct", "union", "enum"}

IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
# {int}|{hex}|{exponent} of the lexer, the longest of them.
_INT = r"[0-9](?:[0-9_]*[0-9])?(?:[uU]|[uU]?[lL]?[lL])?"
NUMBERS = (re.compile(r"0[xX][0-9a-fA-F]+"), re.compile(_INT), re.compile(f"{_INT}[eE]{_INT}"))
PATH_CHARS = set("_-./#*" + string.ascii_letters + string.digits)
PUNCTUATION = set(";{}[](),=<>+-*/%&|^!~.?:")
STRING_ESCAPE = re.compile(r"\\(?:[ntr\"\\]|[0-7]{1,3}|[xX][0-9a-fA-F]{1,2})")
# An attach point made of these characters only (a type, then ':' parts).
ATTACH_POINT = re.compile(r"^[A-Za-z0-9_.*+:\[\]-]+$")


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, path, map, var, number, punct
    text: str
    line: int


class Refused(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def validate(files: Sequence[ArtifactFile], spec: BpftraceValidatorSpec) -> list[str]:
    """Every file of the artifact is a bpftrace script: what refuses each one."""
    problems: list[str] = []
    for item in files:
        problems += [f"{item.path}, {finding}" for finding in script_problems(item.data)]
    return problems[:MAX_REPORTED]


def script_problems(data: bytes) -> list[str]:
    """What refuses one script, as 'line N: why' (or 'lines N, M: why'), or nothing."""
    if b"\0" in data:
        return ["the whole file: a NUL byte, and a script is text"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return [f"line {line}: text that is not UTF-8"]
    lines: dict[str, list[int]] = {}
    for line, reason in _findings(text):
        seen = lines.setdefault(reason, [])
        if line not in seen:
            seen.append(line)
    return [f"{_where(sorted(numbers))}: {reason}" for reason, numbers in lines.items()]


def _where(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    return "lines " + ", ".join(str(n) for n in numbers[:-1]) + f" and {numbers[-1]}"


def _findings(text: str) -> Iterator[tuple[int, str]]:
    # Whatever the lexer makes of it, a line that starts like a preprocessor
    # directive is refused ('#!' on the first line is the usual interpreter line).
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.lstrip(" \t\r\f\v")
        if number == 1 and raw.startswith("#!"):
            continue
        if stripped.startswith(("#", "%:", "??=")):
            yield number, _preprocessor_reason()
    try:
        tokens = list(tokenize(text))
    except Refused as refused:
        yield refused.line, refused.reason
        return
    yield from _call_findings(tokens)
    yield from _probe_findings(tokens)


def _preprocessor_reason() -> str:
    return (
        "a preprocessor line (#include, #define...), which the checker does not run "
        "(the kernel's BTF gives bpftrace every type)"
    )


def tokenize(text: str) -> Iterator[Token]:
    """bpftrace 0.17's lexer (src/lexer.l), INITIAL state, as far as the rules
    here need it; raises Refused where the script leaves what it can judge."""
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#" and text.startswith("#!", i) and (i == 0 or text[i - 1] == "\n"):
            i = _line_end(text, i)  # ^"#!".*$ : an interpreter line, a comment
        elif c == "#":
            raise Refused(line, _preprocessor_reason())
        elif text.startswith("//", i):
            i = _line_end(text, i)
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise Refused(line, "a comment that never ends")
            line += text.count("\n", i, end)
            i = end + 2
        elif c == '"':
            value, i, line = _string(text, i, line)
            yield Token("string", value, line)
        elif c == ":" and i + 1 < n and _path_char(text, i + 1):
            start = i
            i += 1
            while i < n and _path_char(text, i):
                i += 2 if text[i] == "\\" else 1
            path = text[start:i]
            if "#" in path or "\\" in path:
                raise Refused(line, f"an unusual probe name ({path[:40]})")
            yield Token("path", path, line)
        elif c in "@$":
            match = IDENT.match(text, i + 1)
            end = match.end() if match else i + 1
            if c == "$" and not match:
                digits = re.compile(r"[0-9]+|#").match(text, i + 1)
                end = digits.end() if digits else i + 1
            yield Token("map" if c == "@" else "var", text[i:end], line)
            i = end
        elif IDENT.match(text, i):
            match = IDENT.match(text, i)
            assert match is not None
            word = match.group()
            if word in C_DEFINITIONS:
                # The lexer's STRUCT state: raw characters up to the '*' or ')'
                # ending a cast's type name; '{' or '}' first is a definition.
                j = match.end()
                while j < n and text[j] not in "*){}":
                    j += 1
                if j >= n or text[j] in "{}":
                    raise Refused(
                        line,
                        f"a C {word} definition, which the checker does not compile "
                        "(the kernel's BTF gives bpftrace every type)",
                    )
                yield Token("ident", f"{word} {text[match.end() : j].strip()}", line)
                line += text.count("\n", i, j)
                i = j
                continue
            yield Token("ident", word, line)
            i = match.end()
        elif c in "0123456789":
            end = max(m.end() for m in (p.match(text, i) for p in NUMBERS) if m)
            yield Token("number", text[i:end], line)
            i = end
        elif c in PUNCTUATION:
            yield Token("punct", c, line)
            i += 1
        else:
            raise Refused(line, f"a character bpftrace does not accept here ({c!r})")


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _path_char(text: str, i: int) -> bool:
    if text[i] == "\\":
        return i + 1 < len(text) and text[i + 1] != "\n"
    return text[i] in PATH_CHARS


def _string(text: str, i: int, line: int) -> tuple[str, int, int]:
    """A string literal from its opening quote: (value, index after, line)."""
    j = i + 1
    value: list[str] = []
    while j < len(text):
        c = text[j]
        if c == '"':
            return "".join(value), j + 1, line
        if c == "\n":
            break
        if c == "\\":
            match = STRING_ESCAPE.match(text, j)
            if match is None:
                raise Refused(line, "an escape sequence bpftrace does not accept in a string")
            value.append(match.group())
            j = match.end()
            continue
        value.append(c)
        j += 1
    raise Refused(line, "a string that does not end on its line")


def _call_findings(tokens: list[Token]) -> Iterator[tuple[int, str]]:
    for index, token in enumerate(tokens):
        if token.kind != "ident":
            continue
        word = token.text
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        called = following is not None and following.text == "(" and following.kind == "punct"
        if word in REFUSED_CALLS:
            yield token.line, f"{word}(), which {REFUSED_CALLS[word]}: {ONLY_TRACE}"
        elif word in PREPROCESSOR_WORDS:
            yield token.line, f"{word}, which the checker does not run: {ONLY_TRACE}"
        elif called and word not in ALLOWED_CALLS and word not in PAREN_KEYWORDS:
            yield (
                token.line,
                (
                    f"{word}(), which is not one of the bpftrace builtins that only "
                    "compute, count or print"
                ),
            )


def _probe_findings(tokens: list[Token]) -> Iterator[tuple[int, str]]:
    """Each attach point outside the action blocks: its type must be allowed.
    bpftrace glues an attach point together from every token up to ',', a
    predicate ('/') or the block ('{'), so this does too."""
    depth = 0
    parts: list[Token] = []
    in_predicate = False
    for token in tokens:
        if token.kind == "punct" and token.text == "{":
            if depth == 0:
                yield from _attach_point(parts)
                parts, in_predicate = [], False
            depth += 1
        elif token.kind == "punct" and token.text == "}":
            depth = max(0, depth - 1)
        elif depth > 0 or in_predicate:
            continue
        elif token.kind == "punct" and token.text == ",":
            yield from _attach_point(parts)
            parts = []
        elif token.kind == "punct" and token.text == "/":
            yield from _attach_point(parts)
            parts, in_predicate = [], True
        else:
            parts.append(token)
    yield from _attach_point(parts)


def _attach_point(parts: list[Token]) -> Iterator[tuple[int, str]]:
    if not parts:
        return
    line = parts[0].line
    if any(part.kind == "string" for part in parts):
        yield (
            line,
            f"a probe name with a quoted part, which only user-space probes need: {ONLY_TRACE}",
        )
        return
    text = "".join(part.text for part in parts)
    kind = text.split(":", 1)[0]
    if kind in REFUSED_PROBES:
        yield line, f"a probe of type {kind}, which {REFUSED_PROBES[kind]}: {ONLY_TRACE}"
    elif kind not in ALLOWED_PROBES or not ATTACH_POINT.match(text):
        shown = text if len(text) <= 60 else text[:57] + "..."
        yield (
            line,
            (
                f"a probe ({shown}) of a type a graded script may not use (allowed: "
                "tracepoint, kprobe, kretprobe, kfunc, kretfunc, profile, interval, software, "
                "hardware, BEGIN, END)"
            ),
        )
