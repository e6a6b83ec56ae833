"""``python -m reproq`` is the same CLI as ``reproq``."""

from reproq.cli import run

run()
