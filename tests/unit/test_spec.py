"""The spec shape, canonical JSON and hash match reproq-django's contract byte for byte."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from reproq.errors import InvalidSpec
from reproq.spec import (
    MAX_KEY_BYTES,
    build_spec,
    canonical_json,
    encode_value,
    key_problem,
    parse_spec,
    private_part,
    spec_hash,
    unencodable_part,
)
from tests.contracts import django_vector

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def _contract_spec() -> dict[str, object]:
    return build_spec(
        "contracts.example_task",
        [1, {"nested": True}],
        {
            "amount": Decimal("12.34"),
            "notes": "hello",
            "token": uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
        },
        priority=5,
        lock_key="user:123",
        concurrency_key="account:42",
        concurrency_limit=2,
        run_after=dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC),
        code_ref="abc123",
        pip_lock_hash="deadbeef",
    )


def test_spec_built_from_python_objects_matches_the_contract_file_byte_for_byte() -> None:
    expected = (CONTRACTS / "spec_hash.json").read_bytes()
    assert canonical_json(_contract_spec()).encode("utf-8") == expected


def test_spec_hash_matches_the_contract_sha256() -> None:
    expected = (CONTRACTS / "spec_hash.sha256").read_text().strip()
    assert spec_hash(_contract_spec()) == expected


class _Meta:
    app_label = "auth"
    model_name = "user"


class _User:
    """Stands in for a Django model instance: what the encoder reads of one."""

    _meta = _Meta()

    def __init__(self, pk: object) -> None:
        self.pk = pk


class Promise:
    """Stands in for ``django.utils.functional.Promise``, the base of lazy strings."""


Promise.__module__ = "django.utils.functional"


class _LazyText(Promise):
    def __str__(self) -> str:
        return "lazy text"


def _typed_spec() -> dict[str, object]:
    args, kwargs = django_vector.typed_call(_User(42), _LazyText())
    return build_spec(
        django_vector.TASK_PATH,
        args,
        kwargs,
        priority=django_vector.PRIORITY,
        lock_key=django_vector.LOCK_KEY,
        concurrency_key=django_vector.CONCURRENCY_KEY,
        concurrency_limit=django_vector.CONCURRENCY_LIMIT,
        run_after=django_vector.RUN_AFTER,
    )


def test_spec_with_every_argument_type_matches_the_one_reproq_django_wrote() -> None:
    expected = (CONTRACTS / "spec_types.json").read_bytes()
    assert canonical_json(_typed_spec()).encode("utf-8") == expected


def test_spec_hash_with_every_argument_type_matches_reproq_djangos() -> None:
    expected = (CONTRACTS / "spec_types.sha256").read_text().strip()
    assert spec_hash(_typed_spec()) == expected


def test_datetimes_are_cut_to_milliseconds_with_z_for_utc() -> None:
    moment = dt.datetime(2025, 5, 5, 1, 2, 3, 456789, tzinfo=dt.UTC)
    assert encode_value(moment) == "2025-05-05T01:02:03.456Z"
    assert encode_value(moment.replace(microsecond=0)) == "2025-05-05T01:02:03Z"
    assert encode_value(moment.replace(tzinfo=None)) == "2025-05-05T01:02:03.456"
    minus5 = dt.timezone(dt.timedelta(hours=-5))
    assert encode_value(moment.astimezone(minus5)) == "2025-05-04T20:02:03.456-05:00"
    assert encode_value(dt.time(1, 2, 3, 456789)) == "01:02:03.456"


def test_timezone_aware_times_and_models_without_a_key_are_refused() -> None:
    with pytest.raises(InvalidSpec, match=r"args\[0\]: a timezone-aware time"):
        build_spec("app.tasks.run", [dt.time(1, 2, tzinfo=dt.UTC)])
    with pytest.raises(InvalidSpec, match=r"kwargs\.user: a model instance without a primary"):
        build_spec("app.tasks.run", kwargs={"user": _User(None)})


def test_canonical_json_keeps_non_ascii_as_utf8_and_sorts_nested_keys() -> None:
    assert canonical_json({"b": {"z": 1, "a": "é"}, "a": []}) == '{"a":[],"b":{"a":"é","z":1}}'


def test_encoding_of_timedelta_tuple_and_datetime() -> None:
    value = encode_value(
        (dt.timedelta(days=1, seconds=2, microseconds=3), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    )
    assert value == [
        {"__reproq_type__": "timedelta", "days": 1, "seconds": 2, "microseconds": 3},
        "2026-01-02T00:00:00Z",
    ]


def test_model_instances_are_encoded_as_references_with_the_key_as_text() -> None:
    class Meta:
        app_label = "shop"
        model_name = "order"

    class Order:
        _meta = Meta()
        pk = 7

    assert encode_value(Order()) == {
        "__reproq_type__": "model",
        "app_label": "shop",
        "model": "order",
        "pk": "7",
    }


def test_unencodable_argument_names_where_it_was_found() -> None:
    with pytest.raises(InvalidSpec, match=r"kwargs\.when\[1\]: cannot encode object"):
        build_spec("app.tasks.run", kwargs={"when": [1, object()]})


def test_bad_task_path_is_rejected() -> None:
    with pytest.raises(InvalidSpec, match="dotted path"):
        build_spec("not a path")


def test_parse_spec_names_the_task_on_malformed_json() -> None:
    with pytest.raises(InvalidSpec, match=r"task 42: spec_json is not valid JSON"):
        parse_spec("{nope", result_id=42)
    with pytest.raises(InvalidSpec, match=r"task 7: spec_json\.args must be a list"):
        parse_spec({"task_path": "a.b", "args": {}}, result_id=7)


def test_containers_keep_plain_values_and_still_check_the_others() -> None:
    spec = build_spec("app.tasks.run", [1, "a", None, True], {"n": 2, "f": 1.5, "t": (1, 2)})
    assert spec["args"] == [1, "a", None, True]
    assert spec["kwargs"] == {"n": 2, "f": 1.5, "t": [1, 2]}
    with pytest.raises(InvalidSpec, match=r"args\[2\]: nan is not valid JSON"):
        build_spec("app.tasks.run", [1, 2, float("nan")])
    with pytest.raises(InvalidSpec, match=r"kwargs\.x: inf is not valid JSON"):
        build_spec("app.tasks.run", kwargs={"x": float("inf")})


def test_checked_task_paths_are_remembered_but_bad_ones_never_are() -> None:
    for _ in range(2):  # the second time, the path is already known
        assert build_spec("app.tasks.run")["task_path"] == "app.tasks.run"
    for bad in ("not a path", "app..run", None, ["app", "run"]):
        with pytest.raises(InvalidSpec, match="dotted path"):
            build_spec(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "private"),
    [
        ("myapp.tasks.send", None),
        ("myapp.tasks._send", "_send"),
        ("myapp._internal.send", "_internal"),
        ("_myapp.tasks.send", "_myapp"),
        ("myapp.tasks.send.__globals__", "__globals__"),
        ("my_app.tasks.send_email", None),
    ],
)
def test_private_part_finds_the_first_name_starting_with_an_underscore(
    path: str, private: str | None
) -> None:
    assert private_part(path) == private


def test_a_private_task_path_is_refused_when_the_spec_is_built() -> None:
    with pytest.raises(InvalidSpec, match="names the private '_os'"):
        build_spec("myapp.tasks._os.system", ["true"])


def test_key_problem_names_the_key_and_counts_utf8_bytes() -> None:
    assert key_problem("lock_key", None) is None
    assert key_problem("lock_key", "k" * MAX_KEY_BYTES) is None
    problem = key_problem("concurrency_key", "€" * 400)  # 3 bytes each
    assert problem == (
        f"concurrency_key {'€' * 24!r}… is 1200 bytes, over the {MAX_KEY_BYTES}-byte limit for keys"
    )
    assert key_problem("lock_key", 42) == "lock_key must be a string, got int"


def test_unencodable_part_names_where_the_lone_surrogate_is() -> None:
    spec = build_spec("app.tasks.a", ["ok", ["\ud800"]], {"k": {"deep": "x\udfff"}})
    assert unencodable_part(spec) == "args[1][0]: a lone surrogate '\\ud800'"
    spec["args"] = []
    assert unencodable_part(spec) == "kwargs.k.deep: a lone surrogate '\\udfff'"
    assert unencodable_part(build_spec("app.tasks.a", ["fine"])) is None


def test_arguments_nested_too_deeply_are_an_invalid_spec() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidSpec, match="kwargs are nested too deeply to store"):
        build_spec("app.tasks.a", [], {"deep": deep})
