"""The hypervisor layer: the only package that imports libvirt.

Everything above it (services, tasks, consumers) talks to `Host`, `Guest`,
`DomainSpec` and the guest-agent helpers, never to the bindings.
"""

import libvirt


def _quiet(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr; ours are raised as exceptions."""


libvirt.registerErrorHandler(_quiet, None)
