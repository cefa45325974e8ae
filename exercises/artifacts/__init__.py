"""A Submit's files: what a student hands in, treated as data.

Collected from the student's guest at the click (`collect`), parsed on the
host as hostile input and rebuilt into a clean archive (`archive`): regular
files and folders only, under the paths the manifest declares, owned by root
with fixed modes, capped in size and count, then looked at by the exercise's
validator (`validators`). The clean archive is stored with the attempt and is
what the grading guest receives (`install`), now and at any regrade.
"""
