from django.urls import URLPattern, path

from labplatform.courses.staff import views

urlpatterns: list[URLPattern] = [
    path("cohorts/<int:cohort_id>/vms/", views.cohort_vms, name="cohort_vms"),
    path(
        "cohorts/<int:cohort_id>/vms/<uuid:vm_id>/stop", views.cohort_vm_stop, name="cohort_vm_stop"
    ),
    path(
        "cohorts/<int:cohort_id>/vms/<uuid:vm_id>/destroy",
        views.cohort_vm_destroy,
        name="cohort_vm_destroy",
    ),
    path("attempts/<int:attempt_id>/comment", views.attempt_comment, name="attempt_comment"),
]
