from django.contrib import admin
from django.urls import include, path

from exercises import views as exercise_views
from labplatform.courses import views as course_views
from labplatform.observability import views as observability_views
from vms import views as vm_views

admin.site.site_header = "KernelLab administration"
admin.site.site_title = "KernelLab admin"

urlpatterns = [
    path("", course_views.dashboard, name="dashboard"),
    path("accounts/", include("labplatform.accounts.urls")),
    path("", include("labplatform.api.urls")),
    path("courses/<slug:slug>/", course_views.course_detail, name="course_detail"),
    path("teach/", include("labplatform.courses.urls")),
    path(
        "exercises/attempts/<int:attempt_id>", exercise_views.attempt_status, name="attempt_status"
    ),
    path(
        "exercises/attempts/<int:attempt_id>/", exercise_views.attempt_detail, name="attempt_detail"
    ),
    path(
        "exercises/attempts/<int:attempt_id>/files.tar.gz",
        exercise_views.attempt_files,
        name="attempt_files",
    ),
    path("exercises/<slug:slug>/", exercise_views.exercise_detail, name="exercise_detail"),
    path("exercises/<slug:slug>/start", vm_views.lab_start, name="lab_start"),
    path("exercises/<slug:slug>/check", exercise_views.attempt_check, name="attempt_check"),
    path("exercises/<slug:slug>/submit", exercise_views.attempt_submit, name="attempt_submit"),
    path("vms/<str:vm_id>/stop", vm_views.lab_stop, name="lab_stop"),
    path("vms/<str:vm_id>/resume", vm_views.lab_resume, name="lab_resume"),
    path("vms/<str:vm_id>/reset", vm_views.lab_reset, name="lab_reset"),
    path("vms/<str:vm_id>/destroy", vm_views.lab_destroy, name="lab_destroy"),
    path("vms/<str:vm_id>/status", vm_views.vm_status, name="vm_status"),
    path("vms/<str:vm_id>/console-token", vm_views.console_token, name="console_token"),
    path("vms/<str:vm_id>/files/upload", vm_views.file_upload, name="vm_file_upload"),
    path("vms/<str:vm_id>/files/download", vm_views.file_download, name="vm_file_download"),
    path("vms/<str:vm_id>/kernel-log", vm_views.kernel_log, name="kernel_log"),
    path("vms/<str:vm_id>/watch", vm_views.console_watch, name="console_watch"),
    path("vms/<str:vm_id>/recordings/", vm_views.recording_list, name="recording_list"),
    path("recordings/<str:session_id>/", vm_views.recording_play, name="recording_play"),
    path("recordings/<str:session_id>.cast", vm_views.recording_file, name="recording_file"),
    path("healthz", observability_views.healthz, name="healthz"),
    path("metrics", observability_views.metrics, name="metrics"),
    path("staff/status", observability_views.staff_status, name="staff_status"),
    path(
        "staff/hosts/<slug:name>/drain",
        observability_views.staff_host_drain,
        name="staff_host_drain",
    ),
    path(
        "staff/hosts/<slug:name>/undrain",
        observability_views.staff_host_undrain,
        name="staff_host_undrain",
    ),
    path("admin/", admin.site.urls),
]
