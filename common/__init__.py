"""Code every service shares, in three folders by who reads it:

- `tracing/`: the lesson, read after the apps: set-up, SERVER spans (`http_in`), CLIENT spans (`http_out`),
  PRODUCER/CONSUMER spans and the context inside events (`events`), which propagators (`propagators`);
- `wire/`: strict readers of the wire formats (W3C Trace Context, B3, CloudEvents), each opening with the upstream
  gap it fills and the condition for deleting it;
- `service/`: plumbing: the app skeleton, settings, logs, the HTTP server and client, bounded request bodies.
"""
