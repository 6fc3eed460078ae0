"""Unattended operation: schedules' sources, shadow scoring, promotion, drift watch.

Plain functions the flows and the CLI call; nothing here needs Prefect to run.
"""
