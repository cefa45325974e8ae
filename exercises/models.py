from __future__ import annotations

from django.db import models


class Difficulty(models.TextChoices):
    INTRO = "intro", "Introductory"
    INTERMEDIATE = "intermediate", "Intermediate"
    ADVANCED = "advanced", "Advanced"


class Exercise(models.Model):
    """One exercise of the catalogue (exercises/catalogue/<slug>/), as last synced."""

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    topic = models.CharField(max_length=64)
    difficulty = models.CharField(
        max_length=16, choices=Difficulty.choices, default=Difficulty.INTRO
    )
    points = models.PositiveIntegerField(default=10)
    summary = models.CharField(max_length=300, blank=True)
    instructions = models.TextField(blank=True, help_text="Markdown, rendered and sanitised")
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["topic", "title"]

    def __str__(self) -> str:
        return self.title
