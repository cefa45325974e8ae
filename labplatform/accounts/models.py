from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A person. Whether they study or teach is a property of each cohort
    enrolment (courses.Enrolment.role), not of the account."""

    def __str__(self) -> str:
        full = self.get_full_name()
        return f"{full} ({self.username})" if full else self.username
