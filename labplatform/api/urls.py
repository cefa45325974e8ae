from django.urls import path, re_path

from labplatform.api import views
from labplatform.api.api import api, not_found

urlpatterns = [
    path("api/v1/", api.urls),
    path("api/kernellab-cli.py", views.cli_download, name="api_cli_download"),
    re_path(r"^api/v1/(?P<path>.*)$", not_found),
    path("settings/api/", views.api_settings, name="api_settings"),
    path("settings/api/tokens", views.token_create, name="api_token_create"),
    path("settings/api/tokens/<int:token_id>/revoke", views.token_revoke, name="api_token_revoke"),
    path("settings/api/webhooks", views.webhook_create, name="api_webhook_create"),
    path(
        "settings/api/webhooks/<int:endpoint_id>/delete",
        views.webhook_delete,
        name="api_webhook_delete",
    ),
    path(
        "settings/api/webhooks/<int:endpoint_id>/test",
        views.webhook_test,
        name="api_webhook_test",
    ),
]
