"""Bulk rows made from templates are byte for byte the rows of the single-row path."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reproq.errors import InvalidSpec, PayloadTooLarge
from reproq.producer.bulk import BATCH_BYTES, BATCH_ROWS, _batches
from reproq.producer.enqueue import MAX_SPEC_BYTES, NewTask
from reproq.producer.signature import Signature
from reproq.producer.staging import COLUMNS, StagedRow, copy_field
from reproq.producer.template import staged_rows
from reproq.queries import q
from tests.contracts import django_vector
from tests.unit.test_spec import _LazyText, _User

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)


def _single(sigs: list[Signature]) -> list[StagedRow]:
    return [sig.to_new_task(now=NOW).staged() for sig in sigs]


def _json_of(row: StagedRow) -> str:
    """The spec JSON of a staged row, COPY escapes undone (JSON holds no tabs)."""
    return row.line.split("\t")[1].replace("\\\\", "\\")


SHARED = {"extra_spec": {"django": {"settings_module": "app.settings"}}, "priority": 3}
VARIED: list[Signature] = [
    Signature(task_path="app.tasks.plain", args=(1, "two", 3.5, None, True)),
    Signature(task_path="app.tasks.plain", args=(2,), kwargs={"b": [1, {"z": 1, "a": 2}]}),
    Signature(task_path="app.tasks.plain", args=("naïve ünïcode", "tab\there", 'q"uote\\')),
    Signature(task_path="app.tasks.plain", args=(Decimal("1.10"), uuid.UUID(int=7))),
    Signature(task_path="app.tasks.plain", args=(dt.timedelta(days=1, microseconds=5),)),
    Signature(task_path="app.tasks.plain", args=(1,), priority=True),
    Signature(task_path="app.tasks.plain", args=(1,), priority=1),
    Signature(task_path="app.tasks.plain", args=(1,), priority=1.0),  # type: ignore[arg-type]
    Signature(task_path="app.tasks.plain", args=(1,), max_attempts=True),
    Signature(task_path="app.tasks.keys", args=(1,), lock_key="l\tk\n\\", concurrency_key="c"),
    Signature(task_path="app.tasks.keys", args=(2,), concurrency_key="c", concurrency_limit=2),
    Signature(task_path="app.tasks.queue", args=(1,), queue="emails\\eu", priority=-7),
    Signature(task_path="app.tasks.queue", args=(1,), queue=""),
    Signature(task_path="app.tasks.later", args=(1,), run_after=30, expires_in=dt.timedelta(1)),
    Signature(task_path="app.tasks.later", args=(1,), run_after=30.0),
    Signature(task_path="app.tasks.later", args=(1,), run_after=NOW + dt.timedelta(hours=1)),
    Signature(task_path="app.tasks.meta", args=(1,), metadata={"by": "me\tyou", "n": {1, 2}}),
    Signature(task_path="app.tasks.meta", args=(2,), metadata={"by": "them"}),
    Signature(task_path="app.tasks.extra", args=(1,), extra_spec={"a": "sorts first"}),
    Signature(task_path="app.tasks.extra", args=(1,), extra_spec={"zz": [1, "x"]}),
    Signature(task_path="app.tasks.extra", args=(1,), extra_spec={"args_like": 1}),
    Signature(task_path="app.tasks.extra", args=(1,), max_attempts=9, timeout_seconds=5),
    *(Signature(task_path="app.tasks.shared", args=(i,), **SHARED) for i in range(5)),  # type: ignore[arg-type]
]


def test_rows_from_templates_equal_the_single_row_path() -> None:
    assert list(staged_rows(VARIED, now=NOW)) == _single(VARIED)


def test_options_equal_in_value_but_not_in_type_get_templates_of_their_own() -> None:
    sigs = [Signature(task_path="app.tasks.p", args=(1,), priority=p) for p in (1, True, 1.0)]  # type: ignore[arg-type]
    rows = list(staged_rows(sigs, now=NOW))
    assert len({row.spec_hash for row in rows}) == 3
    assert rows == _single(sigs)


def test_the_typed_contract_vector_comes_out_byte_for_byte() -> None:
    args, kwargs = django_vector.typed_call(_User(42), _LazyText())
    sig = Signature(
        task_path=django_vector.TASK_PATH,
        args=args,
        kwargs=kwargs,
        priority=django_vector.PRIORITY,
        lock_key=django_vector.LOCK_KEY,
        concurrency_key=django_vector.CONCURRENCY_KEY,
        concurrency_limit=django_vector.CONCURRENCY_LIMIT,
        run_after=django_vector.RUN_AFTER,
    )
    # Twice: the second row is made from the template the first one left.
    for row in staged_rows([sig, sig], now=NOW):
        assert _json_of(row).encode("utf-8") == (CONTRACTS / "spec_types.json").read_bytes()
        assert row.spec_hash == (CONTRACTS / "spec_types.sha256").read_text().strip()


def test_a_subclass_of_signature_makes_its_rows_its_own_way() -> None:
    class Tagged(Signature):
        __slots__ = ()

        def to_new_task(self, *, now: dt.datetime | None = None, **row: Any) -> NewTask:
            return replace(super().to_new_task(now=now, **row), metadata={"tagged": True})

    rows = list(staged_rows([Tagged(task_path="app.tasks.t", args=(1,))], now=NOW))
    assert rows[0].line.endswith('\t{"tagged": true}')


def test_calls_that_share_no_options_still_get_the_single_row_path_rows() -> None:
    sigs = [Signature(task_path="app.tasks.k", args=(1,), lock_key=f"k{i}") for i in range(300)]
    assert list(staged_rows(sigs, now=NOW)) == _single(sigs)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (Signature(task_path="app.tasks.x", args=("\ud800",)), InvalidSpec, r"args\[0\]: a lone"),
        (Signature(task_path="app.tasks.x", args=(object(),)), InvalidSpec, r"args\[0\]: cannot"),
        (Signature(task_path="app.tasks.x", max_attempts=0), InvalidSpec, "max_attempts must be"),
        (Signature(task_path="no_dots"), InvalidSpec, "is not a dotted path"),
        (Signature(task_path="app.tasks._private"), InvalidSpec, "private"),
        (
            Signature(task_path="app.tasks.x", args=("x" * MAX_SPEC_BYTES,)),
            PayloadTooLarge,
            "over the 1048576-byte limit",
        ),
        (
            Signature(task_path="app.tasks.x", extra_spec={"args": 1}),
            InvalidSpec,
            "would overwrite a standard field",
        ),
    ],
)
def test_a_bad_signature_raises_what_a_single_enqueue_raises(
    bad: Signature, error: type[Exception], message: str
) -> None:
    good = Signature(task_path="app.tasks.x", args=(1,))
    with pytest.raises(error, match=message) as single:
        bad.to_new_task(now=NOW).staged()
    rows = staged_rows([good, bad, good], now=NOW)
    assert next(rows) == _single([good])[0]
    with pytest.raises(error) as bulk:
        next(rows)
    assert str(bulk.value) == str(single.value)


def test_an_over_long_key_slipped_past_the_signature_is_refused_naming_it() -> None:
    sig = Signature(task_path="app.tasks.x", args=(1,))
    object.__setattr__(sig, "lock_key", "k" * 2000)  # frozen: only a hostile caller can
    with pytest.raises(InvalidSpec, match=r"lock_key 'k+'… is 2000 bytes, over the 1024-byte"):
        list(staged_rows([sig], now=NOW))


def _rows(n: int, size: int = 10) -> list[StagedRow]:
    return [StagedRow(f"{i:064x}", "x" * size) for i in range(n)]


def test_batches_hold_at_most_the_row_and_byte_limits_and_at_least_one_row() -> None:
    assert [len(b.rows) for b in _batches(_rows(BATCH_ROWS * 2 + 1))] == [BATCH_ROWS] * 2 + [1]
    big = BATCH_BYTES // 3
    assert [len(b.rows) for b in _batches(_rows(7, big))] == [3, 3, 1]
    assert [len(b.rows) for b in _batches(_rows(2, BATCH_BYTES * 2))] == [1, 1]


def test_a_batch_goes_in_spec_hash_order_and_knows_its_repeats() -> None:
    rows = [StagedRow(h, str(i)) for i, h in enumerate(["b" * 64, "a" * 64, "b" * 64])]
    (batch,) = _batches(rows)
    assert batch.order == [1, 0, 2]  # a repeated spec keeps input order
    assert batch.repeats
    (distinct,) = _batches(rows[:2])
    assert not distinct.repeats


def test_copy_fields_escape_what_copy_text_reserves() -> None:
    assert copy_field(None) == r"\N"
    assert copy_field("a\tb\nc\rd\\e") == r"a\tb\nc\rd\\e"
    assert copy_field(True) == "t"
    assert copy_field(-5) == "-5"
    assert copy_field(NOW) == "2026-03-04T05:06:07.890123+00:00"
    assert copy_field(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    with pytest.raises(TypeError):
        copy_field(1.5)


def _copy_columns(name: str) -> list[str]:
    text = q(name)
    start = text.index("(", text.index("COPY ")) + 1
    return [c.strip() for c in text[start : text.index(")", start)].split(",")]


def test_both_copy_statements_list_the_columns_in_line_order() -> None:
    line = ["result_id", "spec_hash", "spec_json", *COLUMNS, "metadata_json"]
    assert _copy_columns("enqueue_copy_buffer") == line
    assert _copy_columns("enqueue_copy_rows")[: len(line)] == line
    task = Signature(task_path="app.tasks.x").to_new_task(now=NOW)
    assert len(task.copy_columns().split("\t")) == len(COLUMNS)
