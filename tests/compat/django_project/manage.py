"""manage.py of the small Django project the live compatibility tests drive."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compatproj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
