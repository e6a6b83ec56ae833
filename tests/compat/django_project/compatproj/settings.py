"""A minimal Django project using reproq-django; the database comes from COMPAT_DSN."""

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["COMPAT_DSN"])

SECRET_KEY = "compat-tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "reproq_django",
    "compatapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", ""),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    }
}
TASKS = {
    "default": {
        "BACKEND": "reproq_django.backend.ReproqBackend",
        "OPTIONS": {"TIMEOUT_SECONDS": 60, "MAX_ATTEMPTS": 3},
    },
    "oneshot": {
        "BACKEND": "reproq_django.backend.ReproqBackend",
        "OPTIONS": {"TIMEOUT_SECONDS": 60, "MAX_ATTEMPTS": 1},
    },
}
