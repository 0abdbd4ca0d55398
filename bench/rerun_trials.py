"""Re-train recorded trials of a sweep from their records, so that a sweep whose run folders are gone can be confirmed.

What it does: reads a sweep's records (trials.jsonl, summary.json, as kept in results/), and for each
asked trial (default: the baseline and the Pareto students of summary.json) rebuilds its run
configuration exactly as the sweep did (the sweep config's base, the record's `overrides`, the seed
derived from the record's trial number: sweep.plan.trial_run_config) and trains it with the one
distillation run (run.run_distillation), one core per trial. It then checks that the re-trained
student reproduces the recorded validation metrics (CPU training is deterministic for a given seed and
thread count; a mismatch is reported, not hidden) and writes a sweep folder --out that
`tune-distill confirm` accepts: sweep.json and summary.json copied, trials.jsonl with each re-trained
trial's run_dir pointing at its new run folder (other trials are dropped).

What it must not know: Ray, searchers, schedulers (a trial is re-run without them: trials that were
stopped early are refused, their learning-rate schedule was cut by the scheduler).

Example (CPU, about 15 minutes: the old cpu preset's baseline and Pareto student, two at once):
    nice python bench/rerun_trials.py --sweep results/archive/sweep-cpu-v3 --config bench/configs/sweep_cpu_v3.yaml \
        --out sweeps/cpu-v3-rerun
    tune-distill confirm --sweep sweeps/cpu-v3-rerun --data sweeps/test-carved.json --out sweeps/cpu-v3-rerun/confirm
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_distill.records import read_trials  # noqa: E402

# Metrics that must be reproduced (timings are not), with their absolute tolerance: scores to 1e-6; the
# no-answer threshold is a float32 logit difference, which summation order in the BLAS moves by ~1e-6
# (measured: the old cpu preset's baseline, -1.3850861 recorded, -1.3850899 re-trained, same scores).
CHECKED = {"exact": 1e-6, "f1": 1e-6, "HasAns_f1_always_answer": 1e-6, "na_threshold": 1e-4}


def _train(config_path: str, out: str, record: Mapping[str, Any], cache_dir: str | None = None) -> dict[str, Any]:
    from tune_distill.run import run_distillation
    from tune_distill.sweep.config import load_sweep_config
    from tune_distill.sweep.plan import absolute_base, trial_run_config

    sweep = load_sweep_config(config_path)
    base = absolute_base({**sweep.base, **({"data.cache_dir": cache_dir} if cache_dir else {})}, Path(out))
    config = trial_run_config(base, record["overrides"], int(record["number"]), cpus=1)
    run_dir = Path(out) / "runs" / str(record["trial_id"])
    metrics = run_distillation(config, run_dir, measure_latency=False)
    return {"run_dir": str(run_dir), "metrics": metrics}


def rerun(sweep: Path, config_path: str, out: Path, trial_ids: list[str], workers: int = 2,
          cache_dir: str | None = None) -> list[dict[str, Any]]:
    """Re-train `trial_ids` of `sweep` (default: baseline + Pareto set); write the confirmable folder `out`."""
    summary = json.loads((sweep / "summary.json").read_text())
    records = {str(record["trial_id"]): record for record in read_trials(sweep)}
    if not trial_ids:
        base = (summary.get("baseline") or {}).get("trial_id")
        trial_ids = list(dict.fromkeys([t for t in [base, *(summary.get("pareto_trials") or ())] if t]))
    for trial_id in trial_ids:
        record = records.get(trial_id)
        if record is None:
            raise SystemExit(f"--trial {trial_id}: not in {sweep / 'trials.jsonl'}")
        if record.get("status") != "complete" or "overrides" not in record:
            raise SystemExit(f"trial {trial_id}: status {record.get('status')!r}; only complete trials with recorded "
                             "overrides can be re-run without their scheduler")
    out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = dict(zip(trial_ids, pool.map(_train, [config_path] * len(trial_ids), [str(out)] * len(trial_ids),
                                            [records[t] for t in trial_ids], [cache_dir] * len(trial_ids))))
    rows = []
    for trial_id in trial_ids:
        recorded, new = records[trial_id]["metrics"], done[trial_id]["metrics"]
        mismatches = {name: (recorded.get(name), new.get(name)) for name, tolerance in CHECKED.items()
                      if not math.isclose(float(recorded.get(name, math.nan)), float(new.get(name, math.nan)),
                                          rel_tol=0.0, abs_tol=tolerance)}
        rows.append({"trial_id": trial_id, "run_dir": done[trial_id]["run_dir"], "reproduced": not mismatches,
                     "mismatches": mismatches, **{name: new.get(name) for name in CHECKED}})
    with (out / "trials.jsonl").open("w") as handle:
        for trial_id in trial_ids:
            handle.write(json.dumps({**records[trial_id], "run_dir": done[trial_id]["run_dir"],
                                     "metrics": done[trial_id]["metrics"]}) + "\n")
    for name in ("summary.json", "sweep.json"):
        if (sweep / name).is_file():
            shutil.copy(sweep / name, out / name)
    (out / "rerun.json").write_text(json.dumps({"sweep": str(sweep), "config": config_path, "trials": rows},
                                               indent=1))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", required=True, type=Path, help="sweep records: trials.jsonl and summary.json")
    parser.add_argument("--config", required=True, help="the sweep config (YAML) those trials ran under")
    parser.add_argument("--out", required=True, type=Path, help="folder for the re-trained runs and records")
    parser.add_argument("--trial", action="append", default=[], help="trial id (default: baseline + Pareto set)")
    parser.add_argument("--workers", type=int, default=2, help="trials trained at once, one core each")
    parser.add_argument("--cache-dir", default=None, help="feature and teacher-logit cache (default: <out>/cache)")
    args = parser.parse_args(argv)
    rows = rerun(args.sweep, args.config, args.out, args.trial, args.workers, args.cache_dir)
    for row in rows:
        print(f"{row['trial_id']}: {'reproduced' if row['reproduced'] else 'NOT reproduced ' + str(row['mismatches'])}"
              f" exact {row['exact']:.2f} HasAns_f1_always_answer {row['HasAns_f1_always_answer']:.2f}")
    print(f"rerun: {args.out}/trials.jsonl, rerun.json")
    return 0 if all(row["reproduced"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
