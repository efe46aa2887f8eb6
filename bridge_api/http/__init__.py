"""HTTP plumbing: auth and JWKS, rate limits, idempotency, forms, errors, request logs."""
