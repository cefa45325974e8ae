from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from labplatform.accounts.models import User
from labplatform.courses.selectors import assignment_get_for_student
from vms.selectors import vm_current_for_student


@login_required
def exercise_detail(request: HttpRequest, slug: str) -> HttpResponse:
    assert isinstance(request.user, User)
    assignment = assignment_get_for_student(user=request.user, exercise_slug=slug)
    return render(
        request,
        "exercises/exercise_detail.html",
        {
            "assignment": assignment,
            "exercise": assignment.exercise,
            "status": assignment.status(),
            "vm": vm_current_for_student(user=request.user, exercise=assignment.exercise),
        },
    )
