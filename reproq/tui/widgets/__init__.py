"""Reusable widgets of ``reproq tui``."""
