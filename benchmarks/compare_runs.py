"""Are two runs the same run? Every scalar both logged, compared at full precision, step by step.

    python benchmarks/compare_runs.py runs/modes/ring8_plain_t1/seed114/version_0 \
        runs/modes/ring8_plain_t2/seed114/version_0

Reads the TensorBoard event files of two run folders with ``report.curves`` (a run resumed from its ``last.ckpt``
logs the steps of the epoch it was stopped in again; the value written last counts) and prints one JSON line: the
tags both logged, how many (tag, step) values were compared, how many differ and the first that does, and what only
one run logged. Exit status 0 when both logged the same tags at the same steps with equal values, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import curves  # noqa: E402


def compare(run_a: Path, run_b: Path) -> dict:
    a, b = ({tag: dict(points) for tag, points in curves(run).items()} for run in (run_a, run_b))
    tags, tags_one_run_only = sorted(set(a) & set(b)), sorted(set(a) ^ set(b))
    compared, differ, one_run_only = 0, [], []
    for tag in tags:
        for step in sorted(set(a[tag]) | set(b[tag])):
            if step not in a[tag] or step not in b[tag]:
                one_run_only.append([tag, step])
            else:
                compared += 1
                if a[tag][step] != b[tag][step]:
                    differ.append([tag, step, a[tag][step], b[tag][step]])
    return {
        "tags": len(tags),
        "values_compared": compared,
        "different": len(differ),
        "first_different": differ[0] if differ else None,
        "tags_in_one_run_only": tags_one_run_only,
        "steps_in_one_run_only": len(one_run_only),
        "same": compared > 0 and not differ and not one_run_only and not tags_one_run_only,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_a", type=Path, help="a run folder: lightning_logs/<name>/version_N")
    parser.add_argument("run_b", type=Path, help="the run to compare it with")
    args = parser.parse_args()
    for run in (args.run_a, args.run_b):
        if not any(run.glob("events.out.tfevents.*")):
            parser.error(f"{run}: no TensorBoard event files (give a run folder: lightning_logs/<name>/version_N)")
    result = compare(args.run_a, args.run_b)
    print(json.dumps(result))
    sys.exit(0 if result["same"] else 1)


if __name__ == "__main__":
    main()
