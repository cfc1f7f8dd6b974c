"""Rules over readings: standards as data, event-time evaluation, device health."""
