"""A guest agent that answers garbage, huge or slow replies (the student is
root in the guest and may replace qemu-ga with anything): every call ends in
a clear error, never a hang past its timeout, and never holds more than the
output cap. libvirt's own transport is played by a script of replies here;
a real guest whose agent is replaced is tests/integration/test_faults.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import libvirt
import pytest

from vms.hypervisor.agent import MAX_REPLY_BYTES, GuestAgent
from vms.hypervisor.errors import AgentProtocolError, AgentTimeout, AgentUnavailable


class Clock:
    """time.monotonic and time.sleep of the agent module: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def time_ns(self) -> int:
        return int(self.now * 1e9)


class ScriptedAgent:
    """What qemuAgentCommand returns (or raises), per command name."""

    def __init__(self, **replies: Any) -> None:
        self.replies = replies
        self.calls: list[str] = []

    def __call__(self, domain: object, request: str, timeout: int, flags: int) -> str | None:
        execute = json.loads(request)["execute"]
        self.calls.append(execute)
        reply = self.replies[execute.replace("-", "_")]
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            return reply()
        return reply if isinstance(reply, str) or reply is None else json.dumps(reply)


@pytest.fixture
def clock() -> Iterator[Clock]:
    fake = Clock()
    with mock.patch("vms.hypervisor.agent.time", fake):
        yield fake


def agent_with(script: ScriptedAgent) -> Iterator[GuestAgent]:
    guest = mock.Mock()
    guest.name = "kernellab-test"
    with mock.patch("libvirt_qemu.qemuAgentCommand", script):
        yield GuestAgent(guest)


def run(script: ScriptedAgent, **kwargs: Any) -> Any:
    for agent in agent_with(script):
        return agent.exec(["uname"], timeout=kwargs.pop("timeout", 5), **kwargs)


def started() -> dict[str, Any]:
    return {"return": {"pid": 7}}


def exited(**fields: Any) -> dict[str, Any]:
    return {"return": {"exited": True, "exitcode": 0, **fields}}


def libvirt_error(code: int) -> libvirt.libvirtError:
    error = libvirt.libvirtError("injected")
    error.err = (code, libvirt.VIR_FROM_QEMU, "injected", libvirt.VIR_ERR_ERROR, "", "", "", 0, 0)
    return error


GARBAGE = {
    "not json": "\x00\xff garbage }{",
    "no return": {"error": {"class": "GenericError", "desc": "no"}},
    "a list": [1, 2, 3],
    "null": None,
}


@pytest.mark.parametrize("reply", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_garbage_reply_is_a_protocol_error(reply: Any, clock: Clock) -> None:
    with pytest.raises(AgentProtocolError):
        run(ScriptedAgent(guest_exec=reply))


WRONG_SHAPES = {
    "pid not a number": {"return": {"pid": "seven"}},
    "exited not a bool": {"return": {"exited": "maybe"}},
    "exit code a string": {"return": {"exited": True, "exitcode": "zero"}},
    "output not base64": exited(**{"out-data": "!!!not base64!!!"}),
}


@pytest.mark.parametrize("status", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_a_reply_of_the_wrong_shape_is_a_protocol_error(status: Any, clock: Clock) -> None:
    replies = {"guest_exec": started(), "guest_exec_status": status}
    if "pid" in status["return"]:
        replies["guest_exec"] = status
    with pytest.raises(AgentProtocolError):
        run(ScriptedAgent(**replies))


def test_a_reply_larger_than_any_allowed_is_refused_unparsed(clock: Clock) -> None:
    huge = json.dumps(exited(**{"out-data": "A" * (2 * MAX_REPLY_BYTES + 8)}))
    with (
        mock.patch("json.loads", wraps=json.loads) as loads,
        pytest.raises(AgentProtocolError, match="too large"),
    ):
        run(ScriptedAgent(guest_exec=started(), guest_exec_status=huge))
    assert all(len(call.args[0]) < 1024 for call in loads.call_args_list)


def test_output_over_the_cap_is_cut_and_only_the_cap_is_decoded(clock: Clock) -> None:
    flood = base64.b64encode(b"x" * (4 * 1024 * 1024)).decode()
    script = ScriptedAgent(guest_exec=started(), guest_exec_status=exited(**{"out-data": flood}))
    with mock.patch("base64.b64decode", wraps=base64.b64decode) as decode:
        result = run(script, output_cap=1024)
    assert result.truncated
    assert result.stdout == b"x" * 1024
    assert all(len(call.args[0]) <= 2048 for call in decode.call_args_list)


def test_a_program_that_never_exits_times_out_at_its_deadline(clock: Clock) -> None:
    script = ScriptedAgent(guest_exec=started(), guest_exec_status={"return": {"exited": False}})
    began = clock.now
    with pytest.raises(AgentTimeout, match="still running"):
        run(script, timeout=30)
    assert clock.now - began < 30 + 5 + 1  # the guest's timeout, its kill margin, one poll


SLOW_OR_SILENT = {
    "slow (libvirt's call timeout)": (libvirt.VIR_ERR_OPERATION_TIMEOUT, AgentTimeout),
    "silent (agent unresponsive)": (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, AgentUnavailable),
    "another libvirt error": (libvirt.VIR_ERR_INTERNAL_ERROR, AgentUnavailable),
}


@pytest.mark.parametrize(("code", "error"), SLOW_OR_SILENT.values(), ids=SLOW_OR_SILENT.keys())
def test_a_slow_or_silent_agent_is_a_clear_error(
    code: int, error: type[Exception], clock: Clock
) -> None:
    with pytest.raises(error):
        run(ScriptedAgent(guest_exec=libvirt_error(code)))


def test_a_file_that_never_ends_is_refused_at_the_size_cap(clock: Clock) -> None:
    chunk = base64.b64encode(b"y" * 4096).decode()
    script = ScriptedAgent(
        guest_file_open={"return": 3},
        guest_file_read={"return": {"count": 4096, "buf-b64": chunk, "eof": False}},
        guest_file_close={"return": {}},
    )
    for agent in agent_with(script):
        with pytest.raises(AgentProtocolError, match="larger than"):
            agent.read_file("/root/endless", max_bytes=64 * 1024)
    assert script.calls.count("guest-file-read") <= 64 * 1024 // 4096 + 1
    assert script.calls[-1] == "guest-file-close"


def test_a_file_handle_that_is_not_a_number_is_refused(clock: Clock) -> None:
    script = ScriptedAgent(guest_file_open={"return": {"handle": "../../etc"}})
    for agent in agent_with(script):
        with pytest.raises(AgentProtocolError, match="handle"):
            agent.read_file("/root/x", max_bytes=1024)


def not_utf8_reply() -> str:
    """What libvirt's binding does with a reply that is not UTF-8."""
    try:
        b"\xff{garbage".decode()
    except UnicodeDecodeError as undecodable:
        raise SystemError("returned a result with an exception set") from undecodable
    raise AssertionError("unreachable")


def test_a_reply_that_is_not_utf8_is_a_protocol_error(clock: Clock) -> None:
    with pytest.raises(AgentProtocolError, match="UTF-8"):
        run(ScriptedAgent(guest_exec=not_utf8_reply))
    for agent in agent_with(ScriptedAgent(guest_ping=not_utf8_reply)):
        assert agent.ping() is False
