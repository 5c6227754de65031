"""broker: a local stand-in for the Knative Broker (ingress, Trigger filters, delivery with retries)."""
