from django.urls import path

from labplatform.courses.roster import views

COHORT = "cohorts/<int:cohort_id>/"

urlpatterns = [
    path("", views.teach_home, name="teach_home"),
    path("courses/new", views.course_create, name="course_create"),
    path("courses/<slug:slug>/edit", views.course_edit, name="course_edit"),
    path("courses/<slug:slug>/archive", views.course_archive, name="course_archive"),
    path("courses/<slug:slug>/cohorts/new", views.cohort_create, name="cohort_create"),
    path(COHORT + "edit", views.cohort_edit, name="cohort_edit"),
    path(COHORT + "archive", views.cohort_archive, name="cohort_archive"),
    path(COHORT + "roster/", views.cohort_roster, name="cohort_roster"),
    path(COHORT + "roster/import", views.roster_import, name="roster_import"),
    path(COHORT + "roster/add", views.roster_add, name="roster_add"),
    path(COHORT + "roster/<int:student_id>/remove", views.roster_remove, name="roster_remove"),
    path(COHORT + "roster/<int:student_id>/invite", views.roster_invite, name="roster_invite"),
    path(COHORT + "roster/staff/add", views.roster_staff_add, name="roster_staff_add"),
    path(
        COHORT + "roster/staff/<int:user_id>/remove",
        views.roster_staff_remove,
        name="roster_staff_remove",
    ),
    path(COHORT + "audit/", views.cohort_audit, name="cohort_audit"),
]
