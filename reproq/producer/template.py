"""Rows for many signatures at once: what they share is checked and encoded once.

A bulk enqueue mostly repeats one task with other arguments. Everything of a row but its
arguments and metadata (task path, queue, priority, keys, limits, times, extra spec keys)
is its *template*. A template is made by the single-row path itself
(:meth:`Signature.to_new_task`), from the signature with stand-ins for its arguments, so
it is checked and encoded exactly as a single enqueue would be; its canonical JSON is then
cut around the stand-ins. A signature's spec is that text with its own encoded arguments
spliced in. That is byte for byte the single-row spec because canonical JSON writes a
nested value the same wherever it sits (keys sorted at every level, no whitespace) and
``args`` and ``kwargs`` are two top-level keys; a test compares both paths on many
signatures.

A signature the template cannot serve (a subclass of :class:`Signature`, an option that
cannot be a dict key, options the template refused, a spec over the size limit or with
a string UTF-8 cannot hold) goes the single-row way, which raises its error, or writes
it, as a single enqueue does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, replace

from reproq.producer.enqueue import MAX_SPEC_BYTES, metadata_json
from reproq.producer.signature import Signature
from reproq.producer.staging import StagedRow, staged_row
from reproq.spec import canonical_json, encode_call

__all__ = ["RowTemplate", "staged_rows"]

# Random per process: no argument or extra spec key of a caller holds them by chance, and
# a template whose text holds either more than once is not used.
_ARGS = f"reproq-args-{secrets.token_hex(8)}"
_KWARGS = f"reproq-kwargs-{secrets.token_hex(8)}"
_ARGS_JSON = canonical_json([_ARGS])
_KWARGS_JSON = canonical_json({_KWARGS: None})

_MIN_SHARED = 8
"""A call whose signatures share their options less than this (rows per template) stops
making templates: a template costs about one single-row build, so one per signature
would only add to it."""
_FIRST_TEMPLATES = 64
"""Templates made before the sharing is judged."""


@dataclass(frozen=True, slots=True)
class RowTemplate:
    """A signature's row with its arguments and metadata left out, as text to splice into."""

    head: str
    """Canonical spec JSON up to the encoded ``args``."""
    middle: str
    """Between ``args`` and ``kwargs``."""
    tail: str
    """After ``kwargs``."""
    columns: str
    """COPY text of the row's other columns (:data:`reproq.producer.staging.COLUMNS`)."""
    source: Signature
    """The signature it was made from; holding it keeps the options keyed by identity
    alive, so their ids cannot be reused while the template is."""

    @classmethod
    def of(cls, sig: Signature, *, now: dt.datetime) -> RowTemplate | None:
        """The template of ``sig``'s options, or None when the single-row path must judge."""
        stand_in = replace(sig, args=(_ARGS,), kwargs={_KWARGS: None}, metadata={})
        try:
            task = stand_in.to_new_task(now=now)
            task.validate()
        except Exception:
            return None  # the single-row path raises it again, in its own order
        text = task.spec_json
        if text.count(_ARGS_JSON) != 1 or text.count(_KWARGS_JSON) != 1:
            return None
        head, _, rest = text.partition(_ARGS_JSON)
        middle, _, tail = rest.partition(_KWARGS_JSON)
        return cls(head, middle, tail, task.copy_columns(), sig)

    def row(self, sig: Signature) -> StagedRow | None:
        """``sig``'s buffer row (it has this template's options), or None for the
        single-row path: a spec too large or with a string UTF-8 cannot hold.

        Arguments JSON cannot hold raise :class:`~reproq.errors.InvalidSpec` as they would
        there: the options, checked before them, are known to be good.
        """
        args, kwargs = encode_call(sig.args, sig.kwargs)
        try:
            text = "".join(
                (
                    self.head,
                    canonical_json(args),
                    self.middle,
                    canonical_json(kwargs) if kwargs else "{}",
                    self.tail,
                )
            )
            data = text.encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            return None
        if len(data) > MAX_SPEC_BYTES:
            return None
        spec_hash = hashlib.sha256(data).hexdigest()
        return staged_row(spec_hash, text, self.columns, metadata_json(sig.metadata))


def staged_rows(sigs: Iterable[Signature], *, now: dt.datetime) -> Iterator[StagedRow]:
    """The staged rows of ``sigs``, in order, each as :meth:`Signature.to_new_task` with
    ``now`` would make it; lazily, so a bulk insert holds one batch at a time."""
    templates: dict[Hashable, RowTemplate | None] = {}
    for seen, sig in enumerate(sigs, start=1):
        row = None
        if type(sig) is Signature:  # a subclass may make its rows its own way
            key = _key(sig)
            try:
                template = templates[key]
            except KeyError:
                sharing = len(templates) < _FIRST_TEMPLATES or seen >= len(templates) * _MIN_SHARED
                template = RowTemplate.of(sig, now=now) if sharing else None
                if sharing:
                    templates[key] = template
            except TypeError:  # an option that cannot be a dict key
                template = None
            if template is not None:
                row = template.row(sig)
        yield row if row is not None else sig.to_new_task(now=now).staged()


def _key(sig: Signature) -> tuple[object, ...]:
    """What makes two signatures' templates the same.

    Equal numbers of other types encode differently (``1``, ``1.0``, ``True``), so the
    types of the options written into the spec as they are given belong to the key.
    Times are made absolute and UTC before they are written, so equal ones write alike.
    Metadata is not in the template; extra spec keys are keyed by identity (a call
    usually shares one mapping, from the task's defaults).
    """
    return (
        sig.task_path,
        sig.queue,
        type(sig.queue),
        sig.priority,
        type(sig.priority),
        sig.run_after,
        sig.lock_key,
        sig.concurrency_key,
        sig.concurrency_limit,
        type(sig.concurrency_limit),
        sig.max_attempts,
        type(sig.max_attempts),
        sig.timeout_seconds,
        type(sig.timeout_seconds),
        sig.expires_in,
        id(sig.extra_spec) if sig.extra_spec else None,
    )
