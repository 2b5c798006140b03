"""Exports: CSV and NDJSON of sessions and calls, FinOps FOCUS 1.2, and the security NDJSON."""

FORMATS = ("csv", "json", "focus", "security")
