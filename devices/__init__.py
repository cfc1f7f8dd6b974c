"""What a device is and says: the metric catalogue and the terminal kinds."""

from devices.catalogue import KINDS, METRICS, MetricSpec, TerminalKind, kind, metric

__all__ = ["KINDS", "METRICS", "MetricSpec", "TerminalKind", "kind", "metric"]
