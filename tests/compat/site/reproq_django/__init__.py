"""A stand-in for the ``reproq_django`` package: only its executor module.

reproq-django is not a dependency of reproq's tests; this package lets them run the worker
exactly as a Django project does, with ``DJANGO_SETTINGS_MODULE`` set and
``reproq_django`` importable.
"""
