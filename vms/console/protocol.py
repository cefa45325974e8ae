"""The console websocket protocol, shared by the consumer, the page and the
tests.

Binary frames carry terminal bytes: guest output to the browser, keystrokes
to the guest. Text frames carry small JSON control messages:

browser -> server
  {"type": "resize", "cols": 120, "rows": 40}   owner only
  {"type": "flow", "window": 1048576}           opt in to acknowledged flow control
  {"type": "ack", "bytes": 65536}               bytes the terminal has rendered
server -> browser
  {"type": "hello", "mode": "rw"|"ro", "vm": "...", "hostname": "...", "session": "..."}
  {"type": "kernel", "data": "..."}             kernel messages (ttyS0)
  {"type": "skipped", "bytes": N}               output dropped for a viewer too slow to keep up
  {"type": "input-dropped", "bytes": N}         keystrokes refused: the guest is not reading them
  {"type": "vm", "state": "...", ...}           VM state changes
  {"type": "closing", "code": 44xx, "reason": "..."} sent before a close we initiate
"""

from __future__ import annotations

import enum

SUBPROTOCOL = "kernellab.console.v1"
TOKEN_SUBPROTOCOL_PREFIX = "token."  # noqa: S105 - a prefix, not a secret


class CloseCode(enum.IntEnum):
    """Why we close a console socket; the page has a message for each."""

    NOT_LOGGED_IN = 4401
    FORBIDDEN = 4403
    NO_SUCH_VM = 4404
    TOKEN_INVALID = 4408  # missing, unknown, expired, already used, or for another VM
    VM_NOT_RUNNING = 4409
    CONSOLE_MOVED = 4410  # another web process took the console (hand-over)
    CONSOLE_LOST = 4411  # the stream ended: guest stopped, libvirt restarted
    TOO_MANY_CONSOLES = 4429  # the VM has as many open consoles of this kind as it may
    BAD_MESSAGE = 4400

    @property
    def reason(self) -> str:
        return _REASONS[self]


_REASONS = {
    CloseCode.NOT_LOGGED_IN: "You are not signed in.",
    CloseCode.FORBIDDEN: "You may not open this console.",
    CloseCode.NO_SUCH_VM: "No such VM.",
    CloseCode.TOKEN_INVALID: "The console ticket is invalid or already used.",
    CloseCode.VM_NOT_RUNNING: "The VM is not running.",
    CloseCode.CONSOLE_MOVED: "The console was opened by another server; reconnecting.",
    CloseCode.CONSOLE_LOST: "The console connection ended.",
    CloseCode.TOO_MANY_CONSOLES: (
        "This VM's console is open in too many windows or tabs; close one and reload."
    ),
    CloseCode.BAD_MESSAGE: "Unexpected message.",
}


class ConsoleRefused(Exception):
    def __init__(self, code: CloseCode) -> None:
        super().__init__(code.reason)
        self.code = code
