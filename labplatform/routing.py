"""Websocket routes of the whole site, one list per app."""

from django.urls import path

from labplatform.consumers import UserEventsConsumer

websocket_urlpatterns = [
    path("ws/events/", UserEventsConsumer.as_asgi()),
]
