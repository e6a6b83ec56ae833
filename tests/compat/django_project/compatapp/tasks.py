"""Tasks the live compatibility tests enqueue from Django and run with reproq."""

from django.tasks import task


@task()
def add(a, b):
    """Return the sum."""
    return a + b


@task()
def describe(*values):
    """Return how each argument arrived, after reproq-django decoded it."""
    when, amount, token, delta, day, at, user = values
    return {
        "when": when,
        "amount": amount,
        "token": token,
        "delta": delta.total_seconds(),
        "day": day,
        "at": at,
        "user": f"{type(user).__name__}:{user.pk}:{user.username}",
    }


@task(backend="oneshot")
def boom(message):
    """Fail for good on the first attempt."""
    raise ValueError(message)


@task()
def shout(text):
    """Print to stdout and stderr, then return."""
    import sys

    print(f"out: {text}")
    print(f"err: {text}", file=sys.stderr)
    return text.upper()
