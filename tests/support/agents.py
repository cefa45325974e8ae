"""Stand-ins for a guest agent in unit tests."""

from __future__ import annotations

from vms.hypervisor.agent import ExecResult


class RecordingAgent:
    """Stands in for a guest agent: records each exec, answers ``result``."""

    def __init__(self, result: ExecResult) -> None:
        self.result = result
        self.calls: list[dict[str, object]] = []

    def exec(self, argv: list[str], **kwargs: object) -> ExecResult:
        self.calls.append({"argv": argv, **kwargs})
        return self.result
