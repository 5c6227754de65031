"""Developer tools around the services: OTLP receiver, trace tree, process launcher, `make run`."""
