"""Producing work: the client, the ``@task`` decorator, signatures, enqueue and workflows.

Everything that writes *new* task runs lives here; the engine, the scheduler and the
operations layer reuse :mod:`reproq.producer.enqueue` for their own inserts.
"""
