"""The stress harness: ``reproq torture`` (faults + invariant checks) and ``reproq bench``.

Modules: :mod:`~reproq.stress.torture` (the run), :mod:`~reproq.stress.workload` and
:mod:`~reproq.stress.tasks` (what runs), :mod:`~reproq.stress.faults` (what goes wrong),
:mod:`~reproq.stress.fleet` (the worker and beat processes), :mod:`~reproq.stress.ledger`
(what really executed), :mod:`~reproq.stress.snapshot` and :mod:`~reproq.stress.checker`
(what must hold), :mod:`~reproq.stress.report` (what is shown) and
:mod:`~reproq.stress.bench` (how fast). The core package never imports this one.
"""
