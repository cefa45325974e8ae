from django.contrib import admin

from labplatform.courses.models import Assignment, Cohort, Course, Enrolment


class CohortInline(admin.TabularInline):
    model = Cohort
    extra = 0
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "created_at"]
    search_fields = ["title", "slug"]
    prepopulated_fields = {"slug": ("title",)}
    inlines = [CohortInline]


class EnrolmentInline(admin.TabularInline):
    model = Enrolment
    extra = 0
    autocomplete_fields = ["user"]


class AssignmentInline(admin.TabularInline):
    model = Assignment
    extra = 0


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin):
    list_display = ["name", "course", "starts_on", "ends_on"]
    list_filter = ["course"]
    search_fields = ["name", "course__title"]
    inlines = [EnrolmentInline, AssignmentInline]


@admin.register(Enrolment)
class EnrolmentAdmin(admin.ModelAdmin):
    list_display = ["user", "cohort", "role", "created_at"]
    list_filter = ["role", "cohort__course"]
    search_fields = ["user__username", "user__email", "cohort__name"]
    autocomplete_fields = ["user"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["exercise", "cohort", "opens_at", "due_at", "closes_at"]
    list_filter = ["cohort__course", "cohort"]
    date_hierarchy = "due_at"
