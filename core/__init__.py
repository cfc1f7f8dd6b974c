"""Shared plumbing: settings, database pool and migrations, time partitions, logging, local servers."""
