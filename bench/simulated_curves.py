"""The fifo curves of a simulated sweep's trials: every evaluation each trial would report if none were stopped.

A simulated sweep (tune-distill sweep --simulate; sweep/simulated.py) records only what its scheduler let each
trial report. Its trials' evaluations are a pure function of their settings and seeds (the surrogate's
`evaluations`, the device clock's step and evaluation times), so this script recomputes, for every trial in the
sweep's trials.jsonl, all its evaluations to the end, with timestamps = the trial's number x 10^6 + its simulated
seconds at each evaluation (bench/replay_workers.py reads only the gaps within a trial and the trials' order).
The result is a curves.jsonl that bench/replay_workers.py and bench/replay_schedulers.py replay through early
stopping rules: the seed-scale comparison of issue 22, on the 480 settings the sweep's searcher suggested.

Must not know: schedulers, Ray; how the surrogate was fitted.

Command (CPU, seconds; a finished simulated sweep folder):
    python bench/simulated_curves.py /tmp/seed-a --out results/sim-seed-scale/curves.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_distill.config import RunConfig, apply_overrides  # noqa: E402
from tune_distill.records import read_trials  # noqa: E402
from tune_distill.sweep.config import sweep_config_from_dict  # noqa: E402
from tune_distill.sweep.simulated import load_surrogate, plan_run, simulation_settings  # noqa: E402


def fifo_curves(sweep: Path) -> list[dict]:
    """One row per evaluation of every trial of the simulated sweep, as if no trial had been stopped."""
    saved = json.loads((sweep / "sweep.json").read_text())
    config = saved["config"]
    metrics = [o["name"] for o in saved["objectives"]] + [c["name"] for c in saved["constraints"]]
    parsed = sweep_config_from_dict(saved["config"], str(sweep / "sweep.json"))
    base = apply_overrides(RunConfig(), config["base"])
    named = [SimpleNamespace(name=name) for name in metrics]
    settings = {**simulation_settings(parsed.simulate, named, (), base.data.train_files, base.data.val_file,
                                      base.data.max_val_examples, base.data.max_train_examples), "time_scale": 1.0}
    surrogate = load_surrogate(config["simulate"]["surrogate"])
    rows = []
    for record in sorted(read_trials(sweep), key=lambda r: r["number"]):
        if record["status"] == "failed":
            continue
        overrides = {**config["base"], **record["overrides"], "distill.seed": record["seed"]}
        run = apply_overrides(RunConfig(), overrides)
        plan = plan_run(run, settings)
        total = plan["total_steps"]
        values = surrogate.evaluations(plan["features"], [p / total for p in plan["evaluations"]], run.distill.seed,
                                       float(settings.get("noise", 0.0)))
        for index, (step, evaluation) in enumerate(zip(plan["evaluations"], values), 1):
            seconds = step * plan["step_seconds"] + index * plan["evaluation_seconds"]
            reported = {name: evaluation.get(name, plan["sizes"].get(name)) for name in metrics}
            reported.update({f"{name}_se": evaluation[f"{name}_se"] for name in metrics if f"{name}_se" in evaluation})
            rows.append({"trial_id": record["trial_id"], "number": record["number"], "kind": record.get("kind"),
                         "timestamp": record["number"] * 1_000_000 + seconds, "step": step, "total_steps": total,
                         "final": step == total, "metrics": reported})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="a finished simulated sweep folder")
    parser.add_argument("--out", type=Path, required=True, help="the curves.jsonl to write")
    args = parser.parse_args()
    rows = fifo_curves(args.sweep)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(rows)} evaluations of {len({row['number'] for row in rows})} trials -> {args.out}")


if __name__ == "__main__":
    main()
