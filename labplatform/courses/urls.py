"""The instructor's side, under /teach/: one URL module per part."""

from django.urls import include, path

urlpatterns = [
    path("", include("labplatform.courses.roster.urls")),
    path("", include("labplatform.courses.grades.urls")),
    path("", include("labplatform.courses.board.urls")),
    path("", include("labplatform.courses.staff.urls")),
]
