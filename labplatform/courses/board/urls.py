from django.urls import path

from labplatform.courses.board import views

urlpatterns = [
    path("cohorts/<int:cohort_id>/", views.cohort_board, name="cohort_board"),
    path("cohorts/<int:cohort_id>/board/cell", views.board_cell, name="board_cell"),
    path(
        "cohorts/<int:cohort_id>/students/<int:student_id>/",
        views.student_work,
        name="student_work",
    ),
]
