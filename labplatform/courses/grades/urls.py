"""Assignments, extensions, grade overrides, regrades and the gradebook."""

from django.urls import path

from labplatform.courses.grades import views

COHORT = "cohorts/<int:cohort_id>/"
ASSIGNMENT = COHORT + "assignments/<int:assignment_id>/"

urlpatterns = [
    path(COHORT + "assignments/", views.assignment_list, name="assignment_list"),
    path(COHORT + "assignments/new", views.assignment_create, name="assignment_create"),
    path(ASSIGNMENT + "edit", views.assignment_edit, name="assignment_edit"),
    path(ASSIGNMENT + "extensions/", views.extension_list, name="extension_list"),
    path(
        ASSIGNMENT + "students/<int:student_id>/override",
        views.grade_override,
        name="grade_override",
    ),
    path(ASSIGNMENT + "regrade", views.assignment_regrade, name="assignment_regrade"),
    path(
        ASSIGNMENT + "students/<int:student_id>/regrade",
        views.student_regrade,
        name="student_regrade",
    ),
    path(
        "attempts/<int:attempt_id>/regrade",
        views.attempt_regrade_staff,
        name="attempt_regrade_staff",
    ),
    path("regrades/<int:job_id>", views.regrade_job, name="regrade_job"),
    path(COHORT + "gradebook/", views.gradebook, name="gradebook"),
    path(COHORT + "gradebook.csv", views.gradebook_csv, name="gradebook_csv"),
    path(COHORT + "gradebook.json", views.gradebook_json, name="gradebook_json"),
]
