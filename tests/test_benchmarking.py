"""The benchmark harness and a miniature run of the benchmark cases (correctness, never timing)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from nodecourse.benchmarking import (Counted, Row, call_time, fill_ratios, interleaved_median_times, launched_ops,
                                     median_time, table, write_json)

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
