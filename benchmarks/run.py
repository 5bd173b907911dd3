"""Run every benchmark module (benchmarks/bench_*.py) and print measured vs target.

Each benchmark runs in its own subprocess so that peak-memory readings are per benchmark.
Usage: python -m benchmarks.run [name-substring ...]
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Result

HERE = Path(__file__).resolve().parent


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))


def _run_one(module: str, index: int) -> list[Result]:
    mod = importlib.import_module(f"benchmarks.{module}")
    return list(mod.BENCHMARKS[index]())


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--child":
        results = _run_one(argv[1], int(argv[2]))
        print(json.dumps([r.__dict__ for r in results]))
        return 0
    wanted = argv
    rows: list[Result] = []
    for module in _modules():
        mod = importlib.import_module(f"benchmarks.{module}")
        for index, bench in enumerate(mod.BENCHMARKS):
            label = f"{module}.{bench.__name__}"
            if wanted and not any(w in label for w in wanted):
                continue
            print(f"running {label} ...", file=sys.stderr, flush=True)
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.run", "--child", module, str(index)],
                capture_output=True, text=True, cwd=HERE.parent,
            )
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
                rows.append(Result(label, float("nan"), "", "runs", False, f"crashed: {tail[0]}"))
                continue
            rows.extend(Result(**r) for r in json.loads(proc.stdout.strip().splitlines()[-1]))
    width = max((len(r.name) for r in rows), default=10)
    print(f"{'benchmark':<{width}}  {'measured':>12}  {'unit':<6} {'target':<10} {'ok':<4} note")
    for r in rows:
        print(f"{r.name:<{width}}  {r.measured:>12.3f}  {r.unit:<6} {r.target:<10} "
              f"{'yes' if r.ok else 'NO':<4} {r.note}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
