"""The staff's pages of a cohort: its lab VMs (stop, destroy) and comments
on attempts. Every view fetches and authorises through access_cohort."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from labplatform.accounts.models import User
from labplatform.courses.access import Can, access_cohort
from labplatform.courses.staff import selectors, services
from vms.errors import LabError
from vms.models import LabVM


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # guaranteed by @login_required
    return request.user


@login_required
@require_safe
def cohort_vms(request: HttpRequest, cohort_id: int) -> HttpResponse:
    cohort = access_cohort(user=_user(request), cohort_id=cohort_id, need=Can.MANAGE)
    return render(
        request,
        "courses/staff/cohort_vms.html",
        {"cohort": cohort, "vms": selectors.cohort_vms_list(cohort=cohort)},
    )


VMAction = Callable[..., LabVM]


def _vm_action(action: VMAction, done: str) -> Callable[..., HttpResponse]:
    @login_required
    @require_POST
    def view(request: HttpRequest, cohort_id: int, vm_id: uuid.UUID) -> HttpResponse:
        user = _user(request)
        cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.MANAGE)
        vm = selectors.cohort_vm_get(cohort=cohort, vm_id=vm_id)
        try:
            action(actor=user, cohort=cohort, vm=vm)
        except LabError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{vm.owner.username}'s lab VM for “{vm.exercise}” {done}.")
        return redirect("cohort_vms", cohort_id=cohort.pk)

    return view


cohort_vm_stop = _vm_action(services.cohort_vm_stop, "is being stopped")
cohort_vm_destroy = _vm_action(services.cohort_vm_destroy, "is being destroyed")


@login_required
@require_POST
def attempt_comment(request: HttpRequest, attempt_id: int) -> HttpResponse:
    user = _user(request)
    attempt = selectors.access_attempt(user=user, attempt_id=attempt_id, need=Can.COMMENT)
    try:
        services.attempt_comment_add(
            author=user, attempt=attempt, body=request.POST.get("body", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Comment added; {attempt.student.username} can read it.")
    return redirect(_back(request, attempt_id))


def _back(request: HttpRequest, attempt_id: int) -> str:
    """Where the comment form was (the attempt page or the board's drill-down)."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return f"{reverse('attempt_detail', args=[attempt_id])}#comments-{attempt_id}"
