"""What a device is and says: the metric catalogue, terminal kinds, topic scheme and payload codecs."""

from devices.catalogue import KINDS, METRICS, MetricSpec, TerminalKind, drift_limit, kind, metric
from devices.telemetry import PayloadError, Reading, decode_telemetry, encode_telemetry
from devices.topics import Channel, Topic, TopicError

__all__ = [
    "KINDS", "METRICS", "Channel", "MetricSpec", "PayloadError", "Reading", "TerminalKind", "Topic", "TopicError",
    "decode_telemetry", "drift_limit", "encode_telemetry", "kind", "metric",
]
