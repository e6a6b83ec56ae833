"""Importable task functions the test suite enqueues and executes."""
