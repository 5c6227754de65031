"""`make bench`: the cost of tracing, measured side by side."""
