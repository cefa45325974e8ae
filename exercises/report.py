"""Reading what a grading run produced: the checker's JSON report and the
guest's kernel console.

Both come from a guest the student controlled (at Check it is their own
machine, where they are root), so both are hostile input: bounded before
anything is built from them, parsed by one schema, and never able to raise
anything but ReportError.

The report is the checker library's (exercises/checklib/kernellab_check.py)::

    {"nonce": "...", "checks": [{"id", "title", "passed", "points", "message"}, ...]}

Points are the manifest's, never the checker's: a passed check earns its
declared points, a failed one none.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exercises.manifest import CheckSpec, ExerciseManifest, Mode

MESSAGE_LIMIT = 2000  # characters of a check's message kept (the checker library's too)
MAX_INT_DIGITS = 12  # no honest number in a report is longer
MAX_REPORTED_ERRORS = 3
# Characters that must not reach the database or the page: C0/C1 controls
# other than tab and newline (PostgreSQL rejects NUL), and the bidirectional
# overrides that make text display differently from what it says.
_UNSAFE_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class ReportError(Exception):
    """The checker's output cannot be graded; ``reason`` says why, for humans."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CheckOutcome:
    check_id: str
    title: str  # the manifest's
    passed: bool
    points_awarded: int
    max_points: int
    message: str
    hidden: bool


@dataclass(frozen=True)
class Report:
    checks: list[CheckOutcome]  # in manifest order
    # Disagreements with the manifest that do not void the report (a title or
    # points value the checker declares differently): for the operator's log.
    warnings: list[str] = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(check.points_awarded for check in self.checks)

    @property
    def max_score(self) -> int:
        return sum(check.max_points for check in self.checks)

    @property
    def passed_all(self) -> bool:
        return all(check.passed for check in self.checks)


class _ReportedCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(max_length=64)
    title: str = Field(max_length=1000)
    passed: bool
    points: int = Field(ge=0)
    message: str


class _ReportedRun(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    nonce: str = Field(max_length=256)
    checks: list[_ReportedCheck] = Field(max_length=1000)


class _Rejected(ValueError):
    """Raised from inside json.loads by the hooks below."""


def parse_report(raw: bytes, *, nonce: str, manifest: ExerciseManifest, mode: Mode) -> Report:
    """The checker's stdout as a Report, or ReportError saying why not.

    ``mode`` is how the checker ran: "check" reports the visible checks only,
    "submit" every check, hidden ones included.
    """
    if not nonce:
        raise ValueError("parse_report needs the nonce the checker was given")
    reported = _decode(raw, limit=manifest.grading.output_limit_bytes)
    if not hmac.compare_digest(_utf8(reported.nonce), _utf8(nonce)):
        raise ReportError(
            "The report does not carry this run's nonce: it is not the output of this run."
        )
    specs = {check.id: check for check in manifest.checks}
    by_id: dict[str, _ReportedCheck] = {}
    for check in reported.checks:
        spec = specs.get(check.id)
        if spec is None:
            raise ReportError(
                f"The report has a check {_quote(check.id)} that the exercise does not declare."
            )
        if check.id in by_id:
            raise ReportError(f"The report has check {_quote(check.id)} twice.")
        if not spec.runs_in(mode):
            what = "hidden check" if spec.hidden else "check"
            when = "only runs at Submit" if spec.hidden else "only runs on Check"
            raise ReportError(f"The report has {what} {_quote(check.id)}, which {when}.")
        if check.points > spec.points:
            raise ReportError(
                f"The report gives check {_quote(check.id)} {check.points} "
                f"points; it is worth {spec.points}."
            )
        by_id[check.id] = check
    missing = [spec.id for spec in manifest.checks_for(mode) if spec.id not in by_id]
    if missing:
        raise ReportError(
            "The report lacks check(s) "
            + ", ".join(map(_quote, missing))
            + ": the checker stopped early or is out of date."
        )
    warnings = list(_mismatches(manifest.checks_for(mode), by_id))
    outcomes = [
        CheckOutcome(
            check_id=spec.id,
            title=spec.title,
            passed=by_id[spec.id].passed,
            points_awarded=spec.points if by_id[spec.id].passed else 0,
            max_points=spec.points,
            message=clean_message(by_id[spec.id].message),
            hidden=spec.hidden,
        )
        for spec in manifest.checks_for(mode)
    ]
    return Report(outcomes, warnings)


def _decode(raw: bytes, *, limit: int) -> _ReportedRun:
    """Bytes -> exactly one JSON object of the right shape, or ReportError.
    The size is checked before anything is copied or decoded."""
    if len(raw) > limit:
        raise ReportError(f"The checker printed {len(raw)} bytes, more than the limit of {limit}.")
    if not raw.strip():
        raise ReportError("The checker printed nothing: it did not produce a report.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"The checker's output is not UTF-8 text (byte {exc.start}).") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_bounded_int,
            parse_constant=_no_constants,
        )
    except _Rejected as exc:
        raise ReportError(f"The checker's output is not a valid report: {exc}.") from None
    except json.JSONDecodeError as exc:
        what = (
            "there is more output after the JSON object"
            if exc.msg == "Extra data"
            else f"{exc.msg.lower()} at character {exc.pos}"
        )
        raise ReportError(f"The checker's output is not exactly one JSON object: {what}.") from None
    except RecursionError:
        raise ReportError("The checker's output is nested too deeply to be a report.") from None
    except (ValueError, MemoryError) as exc:
        raise ReportError(f"The checker's output cannot be read ({type(exc).__name__}).") from None
    if not isinstance(value, dict):
        raise ReportError("The checker's output is JSON, but not an object.")
    try:
        return _ReportedRun.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        details = "; ".join(
            f"{_location(error['loc'])}: {error['msg']}" for error in errors[:MAX_REPORTED_ERRORS]
        )
        extra = len(errors) - MAX_REPORTED_ERRORS
        more = f" (and {extra} more)" if extra > 0 else ""
        raise ReportError(f"The checker's report is malformed: {details}{more}.") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Rejected(f"the key {_quote(key)} appears twice in one object")
        result[key] = value
    return result


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Rejected(f"a number has more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _no_constants(name: str) -> None:
    raise _Rejected(f"{name} is not a number a report may contain")


def _mismatches(specs: list[CheckSpec], by_id: dict[str, _ReportedCheck]) -> Iterator[str]:
    for spec in specs:
        check = by_id[spec.id]
        if check.points != spec.points:
            yield f"check {spec.id}: {check.points} points in the checker, {spec.points} declared"
        if check.title != spec.title:
            yield f"check {spec.id}: the checker's title is {_quote(check.title)}"


def clean_message(text: str) -> str:
    """A checker's message as stored and shown: valid UTF-8, no control or
    direction-override characters, at most MESSAGE_LIMIT characters."""
    text = text[: MESSAGE_LIMIT * 2]  # bounds the work below; the cut comes later
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"
    text = _UNSAFE_CHARS.sub("", text.replace("\r\n", "\n")).strip()
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1].rstrip() + "…"
    return text


def clean_text(text: str) -> str:
    """Free text from a guest (a console tail, a reason quoting stderr) as
    stored: valid UTF-8, no NUL or other control characters but tab and
    newline, no direction overrides. Not shortened."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _UNSAFE_CHARS.sub("", text.replace("\r\n", "\n"))


def _quote(text: str, limit: int = 64) -> str:
    """Untrusted text quoted for a reason or warning: short and printable."""
    text = clean_message(text[: limit + 1]).replace("\n", " ")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _location(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return _quote(name, 80)[1:-1] or "the report"


# -- the kernel console -------------------------------------------------------------

MAX_KERNEL_SCAN_CHARS = 4 << 20  # of the log's end: a flood of messages can precede a crash
MAX_KERNEL_LINES = 200
MAX_KERNEL_LINE_CHARS = 300
MAX_KERNEL_LOG_CHARS = 16_000
CONTEXT_LINES = 40  # lines kept after a trigger while they look like its report

# A line that says the kernel is in trouble.
_TRIGGER = re.compile(
    r"Kernel panic - not syncing"
    r"|\bOops\b"
    r"|\bBUG:"
    r"|kernel BUG at"
    r"|\bWARNING:"
    r"|general protection fault"
    r"|[Uu]nable to handle"
    r"|soft lockup|hard LOCKUP"
    r"|INFO: task .{1,64} blocked for more than"
    r"|rcu.{0,16} detected (?:expedited )?stalls"
    r"|Call Trace:"
    r"|\b(?:UBSAN|KASAN|KFENCE|KMSAN):"
    r"|list_(?:add|del) corruption"
    r"|refcount_t:"
    r"|stack-protector:|stack guard page was hit"
    r"|double fault|invalid opcode:"
)
# The lines that follow a trigger as part of the same report.
_CONTEXT = re.compile(
    r"^\s*(?:"
    r"Call Trace:|</?(?:TASK|IRQ|NMI|EOI|SOFTIRQ)>|\?\s|"
    r"[\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+|"  # a stack frame: func+0x12/0x40 [module]
    r"(?:RIP|RSP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d{1,2}|FS|GS|CS|DS|ES|CR\d|DR\d):|"
    r"Code:|Modules linked in:|CPU: \d+|Hardware name:|Workqueue:|PGD |P4D |#PF:|"
    r"Kernel Offset:|Tainted:|---\[ end |note:|Fixing recursive fault|Rebooting in"
    r")"
)
_TIMESTAMP = re.compile(r"^\s*\[\s*\d+\.\d+\]\s?")


def scan_kernel_log(text: str) -> list[str]:
    """The lines of a kernel console log that report trouble (oops, BUG,
    panic, WARNING, lockups, hung tasks...), each with the trace that follows
    it, capped in count and size. Empty if the kernel said nothing alarming."""
    found: list[str] = []
    size = 0
    following = 0  # context lines still allowed after the last trigger
    for raw_line in text[-MAX_KERNEL_SCAN_CHARS:].splitlines():
        line = _UNSAFE_CHARS.sub("", raw_line).rstrip()
        if not line:
            following = 0
            continue
        body = _TIMESTAMP.sub("", line)
        if _TRIGGER.search(body):
            following = CONTEXT_LINES
        elif following and _CONTEXT.match(body):
            following -= 1
        else:
            following = 0
            continue
        if len(line) > MAX_KERNEL_LINE_CHARS:
            line = line[: MAX_KERNEL_LINE_CHARS - 1] + "…"
        if len(found) >= MAX_KERNEL_LINES or size + len(line) > MAX_KERNEL_LOG_CHARS:
            found.append("[… more kernel messages omitted]")
            break
        found.append(line)
        size += len(line) + 1
    return found
