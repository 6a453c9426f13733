"""dunning: a Kafka-native payment-collection worker."""

__version__ = "0.1.0"
