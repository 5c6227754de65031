"""first: takes a request, turns it into a CloudEvent and posts it to the Broker."""
