"""Vocabularies shared by the exercise manifest and the database.

Kept apart from models.py so that the manifest schema can use them without
importing models (and so without an app registry).
"""

from __future__ import annotations

from django.db import models


class Difficulty(models.TextChoices):
    BEGINNER = "beginner", "Beginner"
    INTERMEDIATE = "intermediate", "Intermediate"
    ADVANCED = "advanced", "Advanced"
