"""Ingestion into the time-series store of readings."""
