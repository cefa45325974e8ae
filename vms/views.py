"""POST-only actions on a student's VM. Each returns JSON to the page's
script, or redirects back for a browser without JavaScript."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from labplatform.accounts.models import User
from labplatform.courses.selectors import assignment_get_for_student
from vms import services
from vms.errors import LabError
from vms.events import vm_event_payload
from vms.models import LabVM
from vms.selectors import vm_get_for_owner


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _respond(request: HttpRequest, vm: LabVM | None, error: LabError | None) -> HttpResponse:
    if _wants_json(request):
        if error is not None:
            return JsonResponse({"error": error.code, "message": error.message}, status=409)
        assert vm is not None
        return JsonResponse(vm_event_payload(vm))
    if error is not None:
        messages.error(request, error.message)
    if vm is not None:
        slug = vm.exercise.slug
    else:
        assert request.resolver_match is not None
        slug = request.resolver_match.kwargs["slug"]
    return redirect("exercise_detail", slug=slug)


@login_required
@require_POST
def lab_start(request: HttpRequest, slug: str) -> HttpResponse:
    assert isinstance(request.user, User)
    assignment = assignment_get_for_student(user=request.user, exercise_slug=slug)
    try:
        vm = services.lab_start(user=request.user, assignment=assignment)
    except LabError as exc:
        return _respond(request, None, exc)
    return _respond(request, vm, None)


def _vm_action(action: Callable[..., LabVM]) -> Callable[[HttpRequest, str], HttpResponse]:
    @login_required
    @require_POST
    def view(request: HttpRequest, vm_id: str) -> HttpResponse:
        assert isinstance(request.user, User)
        vm = vm_get_for_owner(user=request.user, vm_id=vm_id)
        try:
            vm = action(vm=vm)
        except LabError as exc:
            return _respond(request, vm, exc)
        return _respond(request, vm, None)

    return view


lab_stop = _vm_action(services.lab_stop)
lab_resume = _vm_action(services.lab_resume)
lab_reset = _vm_action(services.lab_reset)
lab_destroy = _vm_action(services.lab_destroy)


@login_required
@require_GET
def vm_status(request: HttpRequest, vm_id: str) -> JsonResponse:
    assert isinstance(request.user, User)
    return JsonResponse(vm_event_payload(vm_get_for_owner(user=request.user, vm_id=vm_id)))
