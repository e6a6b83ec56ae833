"""How a worker with several connections shares its slots, ids and children between lanes."""

from __future__ import annotations

import pytest

from reproq.engine.worker import WorkerOptions, lane_options, split
from reproq.errors import ConfigError


def test_split_shares_as_evenly_as_possible() -> None:
    assert split(400, 2) == [200, 200]
    assert split(5, 3) == [2, 2, 1]
    assert split(3, 3) == [1, 1, 1]


def test_lanes_get_their_share_of_slots_and_children_and_their_own_ids() -> None:
    options = WorkerOptions(
        worker_id="box",
        concurrency=7,
        connections=3,
        executor="process",
        executor_options={"processes": 7, "max_tasks_per_child": 50},
        allowed_task_modules=("app.",),
    )
    lanes = lane_options(options)
    assert [lane.worker_id for lane in lanes] == ["box", "box.2", "box.3"]
    assert [lane.concurrency for lane in lanes] == [3, 2, 2]
    assert [lane.executor_options["processes"] for lane in lanes] == [3, 2, 2]
    assert {lane.executor_options["max_tasks_per_child"] for lane in lanes} == {50}
    assert {lane.connections for lane in lanes} == {1}
    assert {lane.queues for lane in lanes} == {options.queues}


@pytest.mark.parametrize("connections", [0, 5])
def test_every_lane_needs_a_slot(connections: int) -> None:
    options = WorkerOptions(concurrency=4, connections=connections, allowed_task_modules=("*",))
    with pytest.raises(ConfigError) as info:
        options.validate()
    assert info.value.key == "connections"
