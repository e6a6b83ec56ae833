"""The screens of ``reproq tui``, one per module."""
