"""A student's lab VMs: the same services as the exercise page's buttons."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from ninja import Query, Router, Status

from labplatform.api.auth import LABS, READ, user_of
from labplatform.api.routers.common import (
    CREATE_ERRORS,
    ERRORS,
    IDEMPOTENT,
    Page,
    PageParams,
    paginate,
)
from labplatform.api.schemas import LabOut, SlugFilter
from labplatform.api.selectors import lab_list_for_owner
from labplatform.courses.selectors import assignment_get_for_student
from vms import services
from vms.models import LabVM, VMState
from vms.selectors import vm_get_for_owner

router = Router(tags=["labs"])


@router.post(
    "/exercises/{slug}/lab",
    response={202: LabOut, **CREATE_ERRORS},
    auth=LABS,
    openapi_extra=IDEMPOTENT,
)
def lab_start(request: HttpRequest, slug: str) -> Status[LabOut]:
    """Your lab VM for this exercise: the one you have (resumed if stopped)
    or a new one. Follow its ``state`` until ``running``."""
    user = user_of(request)
    assignment = assignment_get_for_student(user=user, exercise_slug=slug)
    return Status(202, LabOut.of(services.lab_start(user=user, assignment=assignment)))


@router.get("/labs", response={200: Page[LabOut], **ERRORS}, auth=READ)
def lab_list(
    request: HttpRequest,
    page: Query[PageParams],
    state: VMState | None = None,
    exercise: SlugFilter | None = None,
) -> Page[LabOut]:
    """Your lab VMs, newest first; ``state`` and ``exercise`` (a slug) filter."""
    vms = lab_list_for_owner(user=user_of(request))
    if state is not None:
        vms = vms.filter(state=state)
    if exercise:
        vms = vms.filter(exercise__slug=exercise)
    return paginate(vms, page, LabOut.of)


@router.get("/labs/{vm_id}", response={200: LabOut, **ERRORS}, auth=READ)
def lab_status(request: HttpRequest, vm_id: str) -> LabOut:
    """State, progress and, for a failed VM, why."""
    return LabOut.of(vm_get_for_owner(user=user_of(request), vm_id=vm_id))


def _action(name: str, action: Callable[..., LabVM], doc: str) -> None:
    def view(request: HttpRequest, vm_id: str) -> Status[LabOut]:
        vm = vm_get_for_owner(user=user_of(request), vm_id=vm_id)
        return Status(202, LabOut.of(action(vm=vm)))

    view.__name__ = f"lab_{name}"
    view.__doc__ = doc
    router.post(f"/labs/{{vm_id}}/{name}", response={202: LabOut, **CREATE_ERRORS}, auth=LABS)(view)


_action("stop", services.lab_stop, "Save the VM's memory to disk and stop it.")
_action("resume", services.lab_resume, "Start a stopped VM where it was.")
_action("reset", services.lab_reset, "Start over from a fresh disk (your files are lost).")
_action("destroy", services.lab_destroy, "Remove the VM and its disk.")
