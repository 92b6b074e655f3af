"""The HTTP service: `settings` (one frozen settings object), `request` (pydantic request models, the
checks they cannot make, the request as a contract dataset), `response`, `middleware` (ASGI: request
ids, auth, limits, error bodies) and `service` (the `@bentoml.service` class, `recoup serve`)."""
