"""Strict readers of the wire formats the demo speaks: `w3c` (Trace Context), `b3` (Zipkin B3 and its sampling
states), `cloudevents` (CloudEvents 1.0 over HTTP). Each opens with the upstream gap it fills and when to delete it."""
