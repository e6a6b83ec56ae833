"""The worker engine: claiming, leases, attempts, completion, reclaim, wake-ups and lanes."""
