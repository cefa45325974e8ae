"""POST-only actions on a student's VM. Each returns JSON to the page's
script, or redirects back for a browser without JavaScript."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST

from labplatform.accounts.models import User
from labplatform.courses.selectors import assignment_access
from labplatform.ratelimits import rate_limit
from vms import services
from vms.console.access import console_token_issue, vm_get_for_viewer
from vms.errors import FileRefused, FileTooLarge, LabError
from vms.events import vm_event_payload
from vms.guest_files import file_limit_text, vm_file_download, vm_file_upload
from vms.guest_logs import kernel_log_piece
from vms.models import ConsoleMode, ConsoleSession, LabVM, VMState
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
@rate_limit("lab")
def lab_start(request: HttpRequest, slug: str) -> HttpResponse:
    assert isinstance(request.user, User)
    assignment, preview = assignment_access(user=request.user, exercise_slug=slug)
    try:
        vm = services.lab_start(user=request.user, assignment=assignment, preview=preview)
    except LabError as exc:
        return _respond(request, None, exc)
    return _respond(request, vm, None)


def _vm_action(action: Callable[..., LabVM]) -> Callable[[HttpRequest, str], HttpResponse]:
    @login_required
    @require_POST
    @rate_limit("lab")
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


@login_required
@require_POST
@rate_limit("console")
def console_token(request: HttpRequest, vm_id: str) -> HttpResponse:
    """A one-time ticket for the console websocket (owner or instructor)."""
    assert isinstance(request.user, User)
    vm, mode = vm_get_for_viewer(user=request.user, vm_id=vm_id)
    if vm.state != VMState.RUNNING:
        return JsonResponse(
            {"error": "vm_not_running", "message": "The VM is not running."}, status=409
        )
    return JsonResponse(
        {
            "token": console_token_issue(user=request.user, vm=vm),
            "url": f"/ws/vms/{vm.pk}/console/",
            "mode": mode,
            "expires_in": settings.CONSOLE_TOKEN_SECONDS,
        }
    )


@login_required
@require_POST
def file_upload(request: HttpRequest, vm_id: str) -> JsonResponse:
    """A file from the page into the owner's running guest (``directory``,
    /root unless said), through the guest agent."""
    assert isinstance(request.user, User)
    vm = vm_get_for_owner(user=request.user, vm_id=vm_id)
    # Refuse a body far over the limit before reading it (multipart adds a little).
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.VM_FILE_MAX_BYTES + 64 * 1024:
        return _file_error(
            FileTooLarge(f"A file sent to the VM may be at most {file_limit_text()}.")
        )
    upload = request.FILES.get("file")
    if upload is None:
        return _file_error(FileRefused("Choose a file to send."))
    if upload.size is not None and upload.size > settings.VM_FILE_MAX_BYTES:
        return _file_error(
            FileTooLarge(
                f"{upload.name} is {upload.size} bytes; a file sent to the VM may be at most "
                f"{file_limit_text()}."
            )
        )
    try:
        path = vm_file_upload(
            vm=vm,
            directory=request.POST.get("directory") or "/root",
            name=upload.name or "upload",
            data=upload.read(),
        )
    except LabError as exc:
        return _file_error(exc)
    return JsonResponse({"path": path, "bytes": upload.size})


@login_required
@require_GET
def file_download(request: HttpRequest, vm_id: str) -> HttpResponse:
    """A file of the owner's running guest, as an attachment."""
    assert isinstance(request.user, User)
    vm = vm_get_for_owner(user=request.user, vm_id=vm_id)
    try:
        path, data = vm_file_download(vm=vm, path=request.GET.get("path", ""))
    except LabError as exc:
        return _file_error(exc)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = (
        content_disposition_header(as_attachment=True, filename=posixpath.basename(path)) or ""
    )
    return response


def _file_error(error: LabError) -> JsonResponse:
    status = 413 if isinstance(error, FileTooLarge) else 409
    return JsonResponse({"error": error.code, "message": error.message}, status=status)


@login_required
@require_GET
def kernel_log(request: HttpRequest, vm_id: str) -> JsonResponse:
    """What the VM's kernel said since power-on, from where the page stopped
    (vms.kernel_log): the console page's Kernel log pane and boot view."""
    assert isinstance(request.user, User)
    vm, _mode = vm_get_for_viewer(user=request.user, vm_id=vm_id)
    try:
        offset = max(0, int(request.GET.get("offset", "0")))
    except ValueError:
        offset = 0
    piece = kernel_log_piece(vm=vm, offset=offset, file=request.GET.get("file", ""))
    return JsonResponse(
        {
            "text": piece.text,
            "file": piece.file,
            "start": piece.start,
            "offset": piece.offset,
            "restarted": piece.restarted,
            "more": piece.more,
            "state": vm.state,
        }
    )


@login_required
@require_GET
def console_watch(request: HttpRequest, vm_id: str) -> HttpResponse:
    """An instructor's read-only view of a student's console."""
    assert isinstance(request.user, User)
    vm, mode = vm_get_for_viewer(user=request.user, vm_id=vm_id)
    if mode == ConsoleMode.READ_WRITE:
        return redirect("exercise_detail", slug=vm.exercise.slug)
    return render(request, "vms/console_watch.html", {"vm": vm, "mode": mode})


@login_required
@require_GET
def recording_list(request: HttpRequest, vm_id: str) -> HttpResponse:
    assert isinstance(request.user, User)
    vm, _mode = vm_get_for_viewer(user=request.user, vm_id=vm_id)
    sessions = Paginator(
        vm.console_sessions.filter(mode=ConsoleMode.READ_WRITE).exclude(recording=""), 25
    ).get_page(request.GET.get("page"))
    return render(request, "vms/recording_list.html", {"vm": vm, "sessions": sessions})


def _recording_for(request: HttpRequest, session_id: str) -> ConsoleSession:
    assert isinstance(request.user, User)
    try:
        pk = uuid.UUID(session_id)
    except ValueError:
        raise Http404("No such recording") from None
    session = (
        ConsoleSession.objects.select_related("vm").filter(pk=pk).exclude(recording="").first()
    )
    if session is None:
        raise Http404("No such recording")
    vm_get_for_viewer(user=request.user, vm_id=session.vm_id)  # 404 unless owner/instructor
    return session


@login_required
@require_GET
def recording_play(request: HttpRequest, session_id: str) -> HttpResponse:
    session = _recording_for(request, session_id)
    return render(request, "vms/recording_play.html", {"session": session, "vm": session.vm})


@login_required
@require_GET
def recording_file(request: HttpRequest, session_id: str) -> FileResponse:
    session = _recording_for(request, session_id)
    try:
        handle = open(session.recording, "rb")  # noqa: SIM115 - FileResponse closes it
    except OSError:
        raise Http404("This recording is no longer kept") from None
    return FileResponse(handle, content_type="application/x-asciicast")
