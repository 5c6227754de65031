"""second: receives the CloudEvent the Broker delivers and logs it with its trace id."""
