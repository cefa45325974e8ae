from django.contrib import admin
from django.http import HttpRequest

from exercises.models import Attempt, CheckResult, Exercise, ExerciseVersion


@admin.register(Exercise)
class ExerciseAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "topic", "difficulty", "points", "is_active"]
    list_filter = ["topic", "difficulty", "is_active"]
    search_fields = ["slug", "title"]
    # The catalogue folder is the source of truth (manage.py sync_exercises).
    readonly_fields = [
        "slug", "title", "topic", "difficulty", "points", "summary", "instructions",
        "current_version", "updated_at",
    ]  # fmt: skip


@admin.register(ExerciseVersion)
class ExerciseVersionAdmin(admin.ModelAdmin):
    list_display = ["exercise", "content_hash", "created_at"]
    list_filter = ["exercise"]
    search_fields = ["exercise__slug", "content_hash"]
    fields = readonly_fields = (
        "exercise", "content_hash", "created_at", "manifest", "instructions_md",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made by sync_exercises from the catalogue

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # attempts were graded with it: immutable


class CheckResultInline(admin.TabularInline):
    model = CheckResult
    fields = readonly_fields = (
        "position", "check_id", "title", "passed", "points", "max_points", "hidden",
    )  # fmt: skip
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Attempt)
class AttemptAdmin(admin.ModelAdmin):
    list_display = ["id", "student", "exercise", "kind", "status", "score", "max_score",
                    "is_late", "created_at"]  # fmt: skip
    list_filter = ["kind", "status", "is_late", "exercise"]
    search_fields = ["id", "student__username", "exercise__slug"]
    list_select_related = ["student", "exercise"]
    readonly_fields = [f.name for f in Attempt._meta.fields]
    inlines = [CheckResultInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made by Check and Submit, never by hand
