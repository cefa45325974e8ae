"""Websocket routes of the whole site, one list per app."""

from django.urls import path

from labplatform.consumers import UserEventsConsumer
from vms.consumers import ConsoleConsumer

websocket_urlpatterns = [
    path("ws/events/", UserEventsConsumer.as_asgi()),
    path("ws/vms/<str:vm_id>/console/", ConsoleConsumer.as_asgi()),
]
