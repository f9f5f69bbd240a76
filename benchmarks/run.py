"""Run the solver benchmarks: nodecourse, torchdiffeq and torchode side by side in one process.

    python benchmarks/run.py                 # every case at the sizes of the performance targets
    python benchmarks/run.py --quick         # smaller sizes and fewer repeats (a minute or two)
    python benchmarks/run.py --cases 1 4     # only some cases
    python benchmarks/run.py --processes 5   # each case in 5 fresh processes, the median of each timing

Prints a table and writes it as JSON (default benchmarks/results/latest.json). Columns: median wall
time, function evaluations, steps, the overhead factor (solve time / (NFE x one bare call of the
vector field): 1.0 means the solver costs nothing beyond its evaluations), the error against a
float64 tight-tolerance reference, and the time ratio nodecourse / torchdiffeq.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases  # noqa: E402
from nodecourse.benchmarking import fill_ratios, median_of_processes, read_json, table, write_json  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--cases", nargs="*", type=int, default=[1, 2, 3, 4, 7, 5, 6])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (fixed for fair timing)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--processes", type=int, default=1,
                        help="run each case in this many fresh processes and report the median timings")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "latest.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 15)
    quick = args.quick
    runs = {
        1: lambda: cases.mlp_case("1 tiny 4-32-32-4 b64", [4, 32, 32, 4], 64, repeats),
        2: lambda: cases.mlp_case("2 medium 64-256-256-64 b" + ("256" if quick else "1024"), [64, 256, 256, 64],
                                  256 if quick else 1024, max(3, repeats // 3)),
        3: lambda: cases.vdp_case(64 if quick else 256, repeats),
        4: lambda: cases.mixed_case(64 if quick else 256, max(3, repeats // 3)),
        5: lambda: (cases.adjoint_case(64 if quick else 256, repeats)
                    + cases.own_times_gradient_case(64, max(3, repeats // 3))),
        6: lambda: cases.mnist_case(512 if quick else None),
        7: lambda: cases.output_patterns_case(64 if quick else 256, max(3, repeats // 2)),
    }
    rows = []
    for number in args.cases:
        print(f"running case {number} ...", flush=True)
        rows += runs[number]() if args.processes == 1 else _in_processes(number, args)
    fill_ratios(rows)
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "quick": quick, "machine": platform.machine(),
            "processor": platform.processor(), "device": "cpu"}
    write_json(rows, out, meta)
    print(f"wrote {out}")
    return 0


def _in_processes(number: int, args) -> list:
    """Case ``number`` run in ``args.processes`` fresh interpreters, one after another, merged row by row."""
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for k in range(args.processes):
            out = Path(folder) / f"{k}.json"
            command = [sys.executable, __file__, "--cases", str(number), "--threads", str(args.threads), "--out", str(out)]
            command += (["--quick"] if args.quick else []) + (["--repeats", str(args.repeats)] if args.repeats else [])
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            runs.append(read_json(out))
    return median_of_processes(runs)


if __name__ == "__main__":
    sys.exit(main())
