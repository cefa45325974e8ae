"""ASGI entry point: Django for HTTP, Channels for websockets.

Websockets pass the Origin check against ALLOWED_HOSTS first, then get the
session user; consumers decide what that user may see.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labplatform.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from exercises.checks import require_valid_catalogue  # noqa: E402
from labplatform.routing import websocket_urlpatterns  # noqa: E402

# uvicorn runs no system checks: refuse to serve a broken exercise catalogue.
require_valid_catalogue()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
