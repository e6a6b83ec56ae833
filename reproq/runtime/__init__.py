"""The ``reproq up`` runtime: supervision, metrics, HTTP endpoint, health, embedded PostgreSQL."""
