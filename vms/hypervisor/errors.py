"""Errors of the hypervisor layer. Each carries a stable code for the UI/API
and a message a person can act on."""

from __future__ import annotations


class HypervisorError(Exception):
    code = "hypervisor_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HostUnavailable(HypervisorError):
    code = "host_unavailable"


class GuestNotFound(HypervisorError):
    code = "guest_not_found"


class GuestOperationFailed(HypervisorError):
    code = "guest_operation_failed"


class AgentUnavailable(HypervisorError):
    """The guest agent did not answer (guest still booting, hung or crashed)."""

    code = "agent_unavailable"


class AgentTimeout(HypervisorError):
    code = "agent_timeout"


class AgentProtocolError(HypervisorError):
    """The guest answered something that is not what the protocol allows.
    The guest is untrusted: this is an expected failure, not a bug."""

    code = "agent_protocol_error"


class HostDiskFull(HypervisorError):
    """The host's disk for guests is nearly full: no new overlay, restore or
    pool entry until staff free some (vms.confinement)."""

    code = "host_disk_full"
