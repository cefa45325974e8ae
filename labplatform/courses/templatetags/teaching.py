"""{% user_teaches as teaches %}: whether the nav shows "Teach"."""

from __future__ import annotations

from django import template

from labplatform.courses.models import STAFF_ROLES, Enrolment
from labplatform.courses.roster.services import user_may_create_course

register = template.Library()


@register.simple_tag(takes_context=True)
def user_teaches(context: template.Context) -> bool:
    """The requesting user teaches a cohort (instructor or TA) or may create courses."""
    user = getattr(context.get("request"), "user", None)
    if user is None or not user.is_authenticated:
        return False
    return user_may_create_course(user=user) or (
        Enrolment.objects.filter(user=user, role__in=STAFF_ROLES).exists()
    )
