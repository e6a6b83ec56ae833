"""The outcome batch of the worker's round trip, written as one JSON object."""

from __future__ import annotations

import json

from reproq.engine.completion import Completion, encode
from reproq.models import TaskStatus

_AWKWARD = 'quote " backslash \\ newline \n tab \t unicode é ✓ \u2028'


def test_encode_writes_one_json_object_keyed_by_result_id() -> None:
    batch = [
        Completion(result_id=7, attempt=2, status=TaskStatus.SUCCESSFUL, return_json="[1]"),
        Completion(
            result_id=8,
            attempt=1,
            status=TaskStatus.READY,
            delay_seconds=60,
            error_json='{"kind": "app_error"}',
            last_error=_AWKWARD,
            logs_uri="s3://bucket/" + _AWKWARD,
        ),
    ]
    assert json.loads(encode(batch)) == {
        "7": {"a": 2, "s": "SUCCESSFUL", "r": [1]},
        "8": {
            "a": 1,
            "s": "READY",
            "e": {"kind": "app_error"},
            "d": 60.0,
            "m": _AWKWARD,
            "l": "s3://bucket/" + _AWKWARD,
        },
    }
    assert json.loads(encode([])) == {}
