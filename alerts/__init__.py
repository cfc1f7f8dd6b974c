"""Alerts: lifecycle, one active alert per (terminal, rule), incidents, routing to the bureaus."""
