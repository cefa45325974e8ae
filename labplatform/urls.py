from django.contrib import admin
from django.urls import include, path

from exercises import views as exercise_views
from labplatform import views
from labplatform.courses import views as course_views

admin.site.site_header = "KernelLab administration"
admin.site.site_title = "KernelLab admin"

urlpatterns = [
    path("", course_views.dashboard, name="dashboard"),
    path("accounts/", include("labplatform.accounts.urls")),
    path("courses/<slug:slug>/", course_views.course_detail, name="course_detail"),
    path("exercises/<slug:slug>/", exercise_views.exercise_detail, name="exercise_detail"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
