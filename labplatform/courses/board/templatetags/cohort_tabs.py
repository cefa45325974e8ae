"""The cohort pages' tab bar: each tab the viewer's role may open, linked by
URL name. A page whose URL name is not registered yet is left out rather than
breaking every cohort page while the instructor's area is being built."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import NoReverseMatch, reverse

from labplatform.courses.access import Can, role_allows, staff_role
from labplatform.courses.models import Cohort

register = template.Library()


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    url: str


# (key, label, URL name, what opening the page needs)
COHORT_TABS: tuple[tuple[str, str, str, Can], ...] = (
    ("board", "Board", "cohort_board", Can.VIEW),
    ("roster", "Roster", "cohort_roster", Can.VIEW),
    ("assignments", "Assignments", "assignment_list", Can.VIEW),
    ("gradebook", "Gradebook", "gradebook", Can.VIEW),
    ("vms", "VMs", "cohort_vms", Can.MANAGE),
    ("audit", "Audit log", "cohort_audit", Can.VIEW),
)


def reverse_or_empty(name: str, *args: object) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


@register.simple_tag(takes_context=True)
def cohort_tab_links(context: template.Context, cohort: Cohort) -> list[Tab]:
    """The tabs of `cohort` the requesting user may open."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    role = staff_role(user=user, cohort=cohort)
    if role is None:
        return []
    tabs = []
    for key, label, name, need in COHORT_TABS:
        url = reverse_or_empty(name, cohort.pk)
        if url and role_allows(role, need):
            tabs.append(Tab(key=key, label=label, url=url))
    return tabs


@register.simple_tag
def url_or_empty(name: str, *args: object) -> str:
    """reverse(name, args) or "" when the name is not registered."""
    return reverse_or_empty(name, *args)


@register.simple_tag
def template_exists(name: str) -> bool:
    """Whether a template exists: pages include partials that other parts of
    the instructor's area provide only when they are there."""
    try:
        get_template(name)
    except TemplateDoesNotExist:
        return False
    return True
