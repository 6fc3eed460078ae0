"""Intake: the data-set spec, reading and validating batches, quarantine reasons."""
