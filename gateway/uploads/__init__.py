"""Uploads that do not arrive in one request: resumable (tus) and direct-to-bucket uploads, the
sweep of the abandoned ones, and Idempotency-Key replays. The service (`gateway.service`) still
validates and records every image; these modules order the steps around it."""
