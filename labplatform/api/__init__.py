"""The pipeline HTTP API (/api/v1/): tokens, the endpoints, idempotency,
problem details, rate limits and signed webhooks."""
