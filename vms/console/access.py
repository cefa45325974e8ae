"""Who may open a VM's console, and the one-time tokens that let them.

The owner gets read-write; an instructor of the owner's cohort gets read-only;
nobody else gets anything. The page asks for a token over an authenticated
POST, and the websocket spends it: single use, bound to the user and the VM,
valid for CONSOLE_TOKEN_SECONDS.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.http import Http404
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses.selectors import user_teaches_student
from vms.console.protocol import CloseCode, ConsoleRefused
from vms.models import ConsoleMode, ConsoleToken, LabVM, VMKind, VMState


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def console_mode_for(*, user: User, vm: LabVM) -> ConsoleMode | None:
    if not user.is_authenticated or not user.is_active:
        return None
    if vm.owner_id == user.pk:
        return ConsoleMode.READ_WRITE
    cohort_id = vm.assignment.cohort_id if vm.assignment is not None else None
    teaches = user_teaches_student(user=user, student_id=vm.owner_id, cohort_id=cohort_id)
    return ConsoleMode.READ_ONLY if teaches else None


def vm_get_for_viewer(*, user: User, vm_id: object) -> tuple[LabVM, ConsoleMode]:
    """The VM and the viewer's mode, or 404 for anyone without a role on it."""
    try:
        pk = uuid.UUID(str(vm_id))
    except ValueError:
        raise Http404("No such VM") from None
    vm = (
        LabVM.objects.select_related("host", "exercise", "assignment", "owner")
        .filter(pk=pk, kind=VMKind.LAB)
        .first()
    )
    mode = console_mode_for(user=user, vm=vm) if vm is not None else None
    if vm is None or mode is None:
        raise Http404("No such VM")
    return vm, mode


def console_token_issue(*, user: User, vm: LabVM) -> str:
    token = secrets.token_urlsafe(32)
    ConsoleToken.objects.create(
        token_hash=_hash(token),
        user=user,
        vm=vm,
        expires_at=timezone.now() + timedelta(seconds=settings.CONSOLE_TOKEN_SECONDS),
    )
    return token


@dataclass(frozen=True)
class ConsoleGrant:
    vm: LabVM
    mode: ConsoleMode


def console_token_redeem(*, user: User, vm_id: str, token: str | None) -> ConsoleGrant:
    """Spend a token; raise ConsoleRefused with the reason's close code."""
    if not user.is_authenticated:
        raise ConsoleRefused(CloseCode.NOT_LOGGED_IN)
    if not token:
        raise ConsoleRefused(CloseCode.TOKEN_INVALID)
    try:
        pk = uuid.UUID(vm_id)
    except ValueError:
        raise ConsoleRefused(CloseCode.NO_SUCH_VM) from None
    now = timezone.now()
    # The conditional UPDATE is the single use: of two racing connections
    # with one token, exactly one sees a row updated.
    spent = ConsoleToken.objects.filter(
        token_hash=_hash(token), user=user, vm_id=pk, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if not spent:
        raise ConsoleRefused(CloseCode.TOKEN_INVALID)
    vm = (
        LabVM.objects.select_related("host", "assignment", "exercise", "owner")
        .filter(pk=pk)
        .first()
    )
    if vm is None:
        raise ConsoleRefused(CloseCode.NO_SUCH_VM)
    # Roles can change between issue and use (an enrolment removed).
    mode = console_mode_for(user=user, vm=vm)
    if mode is None:
        raise ConsoleRefused(CloseCode.FORBIDDEN)
    if vm.state != VMState.RUNNING or vm.domain_uuid is None:
        raise ConsoleRefused(CloseCode.VM_NOT_RUNNING)
    return ConsoleGrant(vm=vm, mode=mode)


def console_tokens_prune() -> int:
    cutoff = timezone.now() - timedelta(hours=1)
    deleted, _ = ConsoleToken.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
