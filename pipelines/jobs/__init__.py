"""What one run of a job does, end to end: score a batch (the champion, drift watch, the
challenger in shadow), score what a watched source has that is new.

Above scoring, feedback and operations; below the entry points (CLI, flows, serve).
"""
