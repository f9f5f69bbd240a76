"""The benchmark harness and a miniature run of the benchmark cases (correctness, never timing)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

from nodecourse.benchmarking import (Counted, Row, call_time, fill_ratios, interleaved_median_times, launched_ops,
                                     median_of_processes, median_time, read_json, table, write_json)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cases  # noqa: E402


def test_counted_counts_calls():
    counted = Counted(lambda t, y: -y)
    for _ in range(3):
        counted(0.0, torch.ones(2))
    assert counted.calls == 3


def test_interleaved_timing_runs_the_contenders_in_turn():
    calls = []

    def sleeper(name, seconds):
        def run():
            calls.append(name)
            time.sleep(seconds)
        return run

    medians = interleaved_median_times({"a": sleeper("a", 0.001), "b": sleeper("b", 0.004)}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4                       # one warm-up round, then three timed rounds
    assert 0.001 <= medians["a"] < medians["b"] and medians["b"] >= 0.004


def test_timing_is_positive_and_ratios_use_the_torchdiffeq_row(tmp_path):
    assert median_time(lambda: time.sleep(0.002), repeats=3) >= 0.002
    assert 0.001 <= call_time(lambda t, y: time.sleep(0.001), torch.tensor(0.0), torch.ones(4), calls=5) < 0.01
    rows = [Row("a", "torchdiffeq", 2.0), Row("a", "nodecourse", 1.0), Row("b", "nodecourse", 3.0)]
    fill_ratios(rows)
    assert rows[1].vs_torchdiffeq == 0.5 and rows[0].vs_torchdiffeq == 1.0 and rows[2].vs_torchdiffeq is None
    assert "nodecourse" in table(rows)
    write_json(rows, tmp_path / "r.json", {"quick": True})
    assert json.loads((tmp_path / "r.json").read_text())["rows"][1]["vs_torchdiffeq"] == 0.5


def test_runs_in_several_processes_merge_to_their_median_row_by_row(tmp_path):
    def run(factor, seconds):
        return [Row("1 tiny", "nodecourse", seconds, 38, 6, factor, 1e-5, extra={"first solve s": 0.1}),
                Row("1 tiny", "torchdiffeq", 2 * seconds, 38, None, 4.5)]

    for k, (factor, seconds) in enumerate([(1.9, 0.003), (2.1, 0.004), (1.8, 0.0028)]):
        write_json(run(factor, seconds), tmp_path / f"{k}.json", {})
    merged = median_of_processes([read_json(tmp_path / f"{k}.json") for k in range(3)])
    assert [(r.case, r.solver) for r in merged] == [("1 tiny", "nodecourse"), ("1 tiny", "torchdiffeq")]
    assert merged[0].overhead == 1.9 and merged[0].seconds == 0.003 and merged[1].seconds == 0.006
    assert merged[0].nfe == 38 and merged[0].steps == 6 and merged[0].error == 1e-5
    assert merged[0].extra == {"first solve s": 0.1, "processes": 3, "overhead per process": [1.9, 2.1, 1.8]}
    with pytest.raises(ValueError, match="same rows"):
        median_of_processes([run(1.9, 0.003), run(2.0, 0.003)[:1]])
    with pytest.raises(ValueError, match="out of step"):
        median_of_processes([run(1.9, 0.003), run(2.0, 0.003)[::-1]])


def test_launched_ops_counts_the_operations_called_not_their_insides():
    x = torch.ones(3)
    assert launched_ops(lambda: (x + 1) * 2) == 2
    assert launched_ops(lambda: torch.nn.functional.linear(x, torch.eye(3))) == 2  # eye and linear (addmm inside)
    assert launched_ops(lambda: None) == 0


def test_benchmark_cases_run_and_agree_with_the_reference():
    torch.set_num_threads(1)
    rows = cases.mlp_case("tiny", [2, 8, 2], 4, repeats=1)
    dopri = {r.solver: r for r in rows if "dopri5" in r.case}
    assert dopri["nodecourse"].nfe == dopri["torchdiffeq"].nfe  # the same steps as torchdiffeq
    assert all(r.error < 1e-3 for r in rows)
    mixed = {r.solver: r for r in cases.mixed_case(8, repeats=1)}
    assert mixed["nodecourse per-sample"].steps < mixed["nodecourse shared"].steps
