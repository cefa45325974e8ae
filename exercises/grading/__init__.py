"""Grading: run an exercise's checker in a guest and record what it reports.

Check runs in the student's own guest: fast, advisory, since the student is
root there. Submit grades the files collected from the student's guest at the
click (exercises.artifacts, stored with the attempt) in a clean guest, with
the hidden tests; the clean guest is destroyed afterwards, whatever happened.

The modules, one job each:
  bundles        what goes into a guest: checker, hidden tests, starter files
  guest_scripts  the small shell scripts the guest agent runs
  console_log    reading the guest's kernel console log captured by the host
  runner         one checker run in one guest, and judging what came out
  engine         the grading task: Check and Submit, and recording the outcome
"""
