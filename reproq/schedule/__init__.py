"""Periodic work: cron expressions and the beat scheduler that enqueues schedules."""
