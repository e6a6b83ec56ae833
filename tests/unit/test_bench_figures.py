"""The bench's figures: one value per round, medians, and ratios to the same round's
reference loop; the text summary prints them."""

from __future__ import annotations

import re

from reproq.queries import q
from reproq.stress.bench import render_bench
from reproq.stress.bench.burst import django_row
from reproq.stress.bench.figures import RAW_CLAIM, RAW_COPY, Figure, ratio_of, summarize


def _round(raw: float | None, burst: float | None, copy: float = 50_000.0) -> list[Figure]:
    return [
        Figure(RAW_CLAIM, raw, "tasks/s"),
        Figure(RAW_COPY, copy, "rows/s"),
        Figure("e2e-burst c100", burst, "tasks/s", RAW_CLAIM),
        Figure("e2e-burst c100 rss", 80.0, "MB"),
        Figure("enqueue", 20_000.0, "specs/s", RAW_COPY),
    ]


def test_each_ratio_divides_by_the_reference_of_its_own_round() -> None:
    figures = summarize([_round(10_000, 5_000), _round(20_000, 16_000), _round(15_000, 3_000)])

    burst = figures["e2e-burst c100"]
    assert burst["runs"] == [5_000, 16_000, 3_000]
    assert burst["median"] == 5_000
    assert burst["reference"] == RAW_CLAIM
    # 0.5, 0.8, 0.2: the median of the ratios, not the ratio of the medians (1/3).
    assert burst["ratio"] == {"runs": [0.5, 0.8, 0.2], "median": 0.5}
    assert figures["enqueue"]["ratio"]["runs"] == [0.4, 0.4, 0.4]
    assert "ratio" not in figures["e2e-burst c100 rss"]
    assert "ratio" not in figures[RAW_CLAIM]
    assert ratio_of(figures, "e2e-burst c100", 1) == 0.8


def test_a_failed_run_has_no_value_and_no_ratio_and_the_median_skips_it() -> None:
    figures = summarize([_round(10_000, None), _round(None, 9_000), _round(10_000, 7_000)])

    burst = figures["e2e-burst c100"]
    assert burst["runs"] == [None, 9_000, 7_000]
    assert burst["median"] == 8_000
    assert burst["ratio"] == {"runs": [None, None, 0.7], "median": 0.7}


def test_without_the_reference_scenario_there_are_no_ratios() -> None:
    figures = summarize([[Figure("e2e-burst c32", 900.0, "tasks/s", RAW_CLAIM)]])
    assert figures == {"e2e-burst c32": {"unit": "tasks/s", "runs": [900.0], "median": 900.0}}


def test_the_summary_prints_each_rate_with_its_ratio_and_the_medians_of_the_rounds() -> None:
    rounds = [_round(10_000, 5_000), _round(20_000, 16_000)]
    burst = {"concurrency": 100, "tasks": 100, "seconds": 0.02, "tasks_per_second": 5_000}
    document = {
        "repeat": 2,
        "scenarios": {
            "raw-claim": {"tasks": 100, "threads": 4, "batch": 10, "tasks_per_second": 10_000},
            "e2e-burst": {
                "runs": [burst],
                "target_tasks_per_second": {"c100": 15_000},
            },
        },
        "figures": summarize(rounds),
    }
    text = render_bench(document)
    assert "e2e-burst c100: 5,000 tasks/s (100 in 0.02s) = 0.500x raw-claim" in text
    assert re.search(r"e2e-burst c100 +10,500 tasks/s \[5,000, 16,000\]  xraw-claim: 0.650", text)


def test_a_burst_row_names_every_column_the_copy_statement_lists() -> None:
    listed = re.search(r"COPY task_runs \((.*?)\) FROM STDIN", q("stress_bench_copy_burst"), re.S)
    assert listed is not None
    columns = [c.strip() for c in listed.group(1).split(",")]
    row = django_row('{"v": 1}', "0" * 64, None)  # type: ignore[arg-type]
    assert list(row) == columns
    assert len(columns) == 35  # every column of task_runs but the result_id
    assert (row["run_after"], row["concurrency_limit"], row["status"]) == (None, 0, "READY")
