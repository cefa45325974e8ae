"""The settings page for API tokens and webhooks (session login, HTML)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from labplatform.accounts.models import User
from labplatform.api import selectors, services
from labplatform.api.errors import ApiError
from labplatform.api.models import SUBSCRIBABLE, Scope, WebhookEvent
from labplatform.courses.models import Cohort
from labplatform.courses.selectors import cohort_list_for_instructor

EXPIRY_CHOICES = [
    ("", "Never"),
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "1 year"),
]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)
    expires_in_days = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False)


class WebhookForm(forms.Form):
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        help_text="A public http(s) receiver; redirects are not followed",
    )
    description = forms.CharField(max_length=200, required=False)
    events = forms.MultipleChoiceField(
        choices=[(e.value, e.label) for e in SUBSCRIBABLE],
        initial=[WebhookEvent.ATTEMPT_FINISHED.value],
        widget=forms.CheckboxSelectMultiple,
        help_text="Lab VM changes are sent for your own labs only",
    )
    cohort = forms.ModelChoiceField(
        queryset=Cohort.objects.none(),
        required=False,
        empty_label="My own attempts",
        help_text="Or every attempt in a cohort you teach",
    )

    def __init__(self, *args: object, user: User, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["cohort"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = cohort_list_for_instructor(user=user)


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # guaranteed by @login_required
    return request.user


def _page(
    request: HttpRequest,
    *,
    token_form: TokenForm | None = None,
    webhook_form: WebhookForm | None = None,
    new_secret: str = "",
    new_webhook_secret: str = "",
) -> HttpResponse:
    user = _user(request)
    endpoints = [
        (endpoint, selectors.webhook_deliveries(endpoint=endpoint, limit=10))
        for endpoint in selectors.webhook_endpoint_list_for_user(user=user)
    ]
    return render(
        request,
        "api/settings.html",
        {
            "tokens": selectors.token_list_for_user(user=user),
            "token_form": token_form or TokenForm(),
            "webhook_form": webhook_form or WebhookForm(user=user),
            "endpoints": endpoints,
            "new_secret": new_secret,
            "new_webhook_secret": new_webhook_secret,
            "now": timezone.now(),
        },
    )


@login_required
@require_safe
def api_settings(request: HttpRequest) -> HttpResponse:
    return _page(request)


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, token_form=form)
    days = form.cleaned_data["expires_in_days"]
    try:
        _token, secret = services.token_create(
            user=_user(request),
            name=form.cleaned_data["name"],
            scopes=[Scope(s) for s in form.cleaned_data["scopes"]],
            expires_at=timezone.now() + timedelta(days=int(days)) if days else None,
        )
    except ApiError as exc:
        form.add_error(None, exc.detail)
        return _page(request, token_form=form)
    # Rendered, never redirected: the secret exists only in this response.
    return _page(request, new_secret=secret)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = selectors.token_get_for_user(user=_user(request), token_id=token_id)
    services.token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” is revoked.")
    return redirect("api_settings")


@login_required
@require_POST
def webhook_create(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = WebhookForm(request.POST, user=user)
    if not form.is_valid():
        return _page(request, webhook_form=form)
    try:
        endpoint = services.webhook_endpoint_create(
            user=user,
            url=form.cleaned_data["url"],
            cohort=form.cleaned_data["cohort"],
            events=[WebhookEvent(e) for e in form.cleaned_data["events"]],
            description=form.cleaned_data["description"],
        )
    except ApiError as exc:
        form.add_error("url" if exc.code == "webhook_url_refused" else None, exc.detail)
        return _page(request, webhook_form=form)
    return _page(request, new_webhook_secret=endpoint.secret)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = selectors.webhook_endpoint_get_for_user(user=_user(request), endpoint_id=endpoint_id)
    services.webhook_endpoint_delete(endpoint=endpoint)
    messages.success(request, f"Webhook {endpoint.url} is removed.")
    return redirect("api_settings")


@login_required
@require_POST
def webhook_test(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = selectors.webhook_endpoint_get_for_user(user=_user(request), endpoint_id=endpoint_id)
    services.webhook_send_test(endpoint=endpoint)
    messages.success(request, "A test event is on its way; its delivery appears below.")
    return redirect("api_settings")


@require_safe
def cli_download(request: HttpRequest) -> FileResponse:
    """kernellab-cli as one file (it uses only Python's standard library), so
    that a course's CI can fetch the client that matches this server."""
    from labplatform import cli

    return FileResponse(
        open(cli.__file__, "rb"),
        as_attachment=True,
        filename="kernellab-cli.py",
        content_type="text/x-python",
    )
