from django.contrib import admin

from exercises.models import Exercise


@admin.register(Exercise)
class ExerciseAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "topic", "difficulty", "points", "is_active"]
    list_filter = ["topic", "difficulty", "is_active"]
    search_fields = ["slug", "title"]
