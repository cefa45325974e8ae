"""Template tags of the grading pages (registered in settings as "grading")."""

from __future__ import annotations

from dataclasses import dataclass

from django import template

from labplatform.courses.access import Can, role_allows, staff_role
from labplatform.courses.models import Cohort

register = template.Library()


@dataclass(frozen=True)
class GradingAccess:
    override: bool
    regrade: bool
    manage: bool


@register.simple_tag(takes_context=True)
def grading_access(context: template.Context, cohort: Cohort) -> GradingAccess:
    """What the requesting user may do to grades in the cohort."""
    request = context.get("request")
    user = getattr(request, "user", None)
    role = None
    if user is not None and user.is_authenticated:
        role = staff_role(user=user, cohort=cohort)
    if role is None:
        return GradingAccess(override=False, regrade=False, manage=False)
    return GradingAccess(
        override=role_allows(role, Can.OVERRIDE),
        regrade=role_allows(role, Can.REGRADE),
        manage=role_allows(role, Can.MANAGE),
    )


@register.filter
def score(value: object) -> str:
    """A score as a plain number ("54.5", "60"), "—" for nothing counted."""
    from labplatform.courses.grades.gradebook import score_text

    text = score_text(value)  # type: ignore[arg-type]
    return text or "—"
