"""Talking to qemu-guest-agent inside a guest.

Every call has a timeout, and every reply is parsed as untrusted input: the
student is root in the guest and may replace the agent with anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt
import libvirt_qemu
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vms.hypervisor.errors import AgentProtocolError, AgentTimeout, AgentUnavailable
from vms.hypervisor.guest import Guest

_CHUNK = 48 * 1024  # bytes per guest-file-write, well inside libvirt's message limit
# A reply can never be larger than this, whatever the guest claims.
MAX_REPLY_BYTES = 8 * 1024 * 1024

_M = TypeVar("_M", bound=BaseModel)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _ExecStarted(_Reply):
    pid: int


class _ExecStatus(_Reply):
    exited: bool
    exitcode: int | None = None
    signal: int | None = None
    out_data: str | None = Field(default=None, alias="out-data")
    err_data: str | None = Field(default=None, alias="err-data")
    out_truncated: bool = Field(default=False, alias="out-truncated")
    err_truncated: bool = Field(default=False, alias="err-truncated")


class _FileRead(_Reply):
    count: int
    buf_b64: str = Field(alias="buf-b64")
    eof: bool


class _FileWrite(_Reply):
    count: int


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None when killed by a signal
    signal: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool  # output was longer than the cap and was cut
    seconds: float


class GuestAgent:
    def __init__(self, guest: Guest, *, call_timeout: int = 10) -> None:
        self.guest = guest
        self.call_timeout = call_timeout

    def command(
        self, execute: str, arguments: dict[str, Any] | None = None, *, timeout: int | None = None
    ) -> Any:
        """Send one agent command; return its "return" value, still untrusted."""
        request: dict[str, Any] = {"execute": execute}
        if arguments is not None:
            request["arguments"] = arguments
        try:
            raw = libvirt_qemu.qemuAgentCommand(
                self.guest.domain, json.dumps(request), timeout or self.call_timeout, 0
            )
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code == libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
                raise AgentUnavailable(f"guest agent of {self.guest.name} not answering") from exc
            if code == libvirt.VIR_ERR_OPERATION_TIMEOUT:
                raise AgentTimeout(
                    f"guest agent of {self.guest.name}: {execute} timed out"
                ) from exc
            raise AgentUnavailable(f"guest agent of {self.guest.name}: {exc}") from exc
        except SystemError as exc:
            # The binding cannot make a str of a reply that is not UTF-8: it
            # raises SystemError from UnicodeDecodeError, which no caller expects.
            if isinstance(exc.__cause__, UnicodeError):
                raise AgentProtocolError(f"{execute}: reply is not UTF-8 text") from exc
            raise
        if raw is None or len(raw) > MAX_REPLY_BYTES * 2:
            raise AgentProtocolError(f"{execute}: reply missing or too large")
        try:
            reply = json.loads(raw)
        except ValueError as exc:
            raise AgentProtocolError(f"{execute}: reply is not JSON") from exc
        if not isinstance(reply, dict) or "return" not in reply:
            raise AgentProtocolError(f"{execute}: reply has no 'return'")
        return reply["return"]

    def _parsed(
        self, model: type[_M], execute: str, arguments: dict[str, Any] | None = None, **kwargs: Any
    ) -> _M:
        value = self.command(execute, arguments, **kwargs)
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise AgentProtocolError(
                f"{execute}: unexpected reply ({exc.error_count()} errors)"
            ) from exc

    def ping(self) -> bool:
        try:
            self.command("guest-ping", timeout=2)
        except (AgentUnavailable, AgentTimeout, AgentProtocolError):
            return False
        return True

    def wait_ready(self, timeout: float) -> float:
        """Block until the agent answers; return how long that took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.ping():
                return time.monotonic() - start
            time.sleep(0.2)
        raise AgentUnavailable(f"guest agent of {self.guest.name} not ready after {timeout:.0f}s")

    def exec(
        self,
        argv: list[str],
        *,
        timeout: float,
        output_cap: int = 1024 * 1024,
        stdin: bytes | None = None,
        env: list[str] | None = None,
    ) -> ExecResult:
        """Run a program in the guest and wait for it, at most ``timeout`` seconds.

        The guest side is killed by coreutils' `timeout` a little before the host
        gives up, so a runaway program does not outlive the call.
        """
        guarded = ["/usr/bin/timeout", "--kill-after=2", f"{max(1, int(timeout))}", *argv]
        arguments: dict[str, Any] = {
            "path": guarded[0],
            "arg": guarded[1:],
            "capture-output": True,
        }
        if stdin is not None:
            arguments["input-data"] = base64.b64encode(stdin).decode()
        if env is not None:
            arguments["env"] = env
        start = time.monotonic()
        started = self._parsed(_ExecStarted, "guest-exec", arguments)
        deadline = start + timeout + 5
        delay = 0.01
        while True:
            status = self._parsed(_ExecStatus, "guest-exec-status", {"pid": started.pid})
            if status.exited:
                break
            if time.monotonic() > deadline:
                raise AgentTimeout(f"{argv[0]} still running in {self.guest.name} after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        stdout, cut_out = _decode_capped(status.out_data, output_cap)
        stderr, cut_err = _decode_capped(status.err_data, output_cap)
        return ExecResult(
            exit_code=status.exitcode if status.signal is None else None,
            signal=status.signal,
            stdout=stdout,
            stderr=stderr,
            truncated=cut_out or cut_err or status.out_truncated or status.err_truncated,
            seconds=time.monotonic() - start,
        )

    def write_file(self, path: str, data: bytes, mode: str = "w") -> None:
        handle = self.command("guest-file-open", {"path": path, "mode": mode})
        if not isinstance(handle, int):
            raise AgentProtocolError("guest-file-open: handle is not an integer")
        try:
            for offset in range(0, max(len(data), 1), _CHUNK):
                chunk = data[offset : offset + _CHUNK]
                written = self._parsed(
                    _FileWrite,
                    "guest-file-write",
                    {"handle": handle, "buf-b64": base64.b64encode(chunk).decode()},
                )
                if written.count != len(chunk):
                    raise AgentProtocolError(f"short write to {path}")
        finally:
            self.command("guest-file-close", {"handle": handle})

    def read_file(self, path: str, max_bytes: int) -> bytes:
        """Read at most ``max_bytes``; a longer file is an error, not a silent cut."""
        handle = self.command("guest-file-open", {"path": path, "mode": "r"})
        if not isinstance(handle, int):
            raise AgentProtocolError("guest-file-open: handle is not an integer")
        data = bytearray()
        try:
            while True:
                reply = self._parsed(
                    _FileRead, "guest-file-read", {"handle": handle, "count": _CHUNK}
                )
                chunk, _ = _decode_capped(reply.buf_b64, _CHUNK)
                data += chunk
                if len(data) > max_bytes:
                    raise AgentProtocolError(f"{path} is larger than {max_bytes} bytes")
                if reply.eof or not chunk:
                    return bytes(data)
        finally:
            self.command("guest-file-close", {"handle": handle})

    def set_time(self) -> None:
        """Set the guest clock from the host's (after a restore it is in the past)."""
        self.command("guest-set-time", {"time": time.time_ns()})


def _decode_capped(b64: str | None, cap: int) -> tuple[bytes, bool]:
    if not b64:
        return b"", False
    # Decode no more than needed to know the output is over the cap.
    limit = ((cap + 3) // 3 + 1) * 4
    try:
        data = base64.b64decode(b64[:limit], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AgentProtocolError("output is not valid base64") from exc
    if len(data) > cap or len(b64) > limit:
        return data[:cap], True
    return data, False
