"""The post-training pruning family of one trained run: one pruned member per budget, each scored like a run.

What it does: reads a finished run folder (its `model/` and `config.yaml`), measures the Fisher information of
the trained student's heads and feed-forward neurons once (prune/fisher.py, on `prune.windows` training windows
against the teacher's cached logits), then for every share in `prune.keep` prunes a copy to that budget
(prune/core.py: mask search, rearrangement, layer-wise least-squares mask tuning; Kwon et al. 2022, no
retraining), optionally fine-tunes it for `prune.recover_steps` steps with the run's distillation loss, and
scores it on the run's validation file with a no-answer threshold of its own. Each member is a run folder of
its own, under the parent's:

    <run>/family/keep70/  config.yaml (the parent's, with prune.keep = [0.7]), command.txt, environment.json,
                          model/, metrics.json (the evaluation's metrics, parameter counts, and prune_*: keep,
                          by, achieved share, heads and neurons per layer, seconds), per_question.json,
                          predictions.json, null_odds.json
    <run>/family.json     the members' summaries (what a sweep records as rows: records.family_records)

so `evaluate`, `confirm`, `export` and `answer` take a member like any run. A member whose metrics.json exists
(with the same prune settings) is kept, not recomputed: a family cut short continues where it stopped.

Seeds: the Fisher and mask-tuning windows are sampled with the run's distill.seed (the same windows for every
member), the recovery fine-tuning's batch order with it too.

Must not know: trials, searchers, Ray, sweeps, reports.

Example (CPU, minutes on a 3-layer student: Fisher on 256 windows, then per member tuning and one evaluation):
    tune-distill prune --run runs/distill-cpu --keep 0.8 0.7 0.6
    tune-distill prune --run runs/distill-cpu --keep 0.7 --set prune.recover_steps=50
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from tune_distill import distill
from tune_distill.claims import write_per_question
from tune_distill.config import ConfigError, RunConfig, apply_overrides, load_config, parse_override
from tune_distill.files import read_json_object, write_atomically, write_json
from tune_distill.prune.core import prune_model
from tune_distill.prune.fisher import measure_fisher
from tune_distill.run import Inputs, make_evaluator, measured_latency, prepare_inputs, write_run_header
from tune_distill.runtime import resolve_device
from tune_distill.student import count_parameters, load_student, save_student

log = logging.getLogger(__name__)

FAMILY_DIR = "family"
FAMILY_FILE = "family.json"
BY_CHOICES = ("parameters", "flops")


def member_name(keep: float) -> str:
    """The folder of the member keeping `keep`: keep70 for 0.7, keep65 for 0.65, keep725 for 0.725."""
    text = f"{keep * 100:.4g}".replace(".", "")
    return f"keep{text}"


def check_settings(config: RunConfig) -> None:
    """The prune section's values that apply_overrides cannot check alone (a ConfigError naming the key)."""
    prune = config.prune
    if prune.by not in BY_CHOICES:
        raise ConfigError(f"prune.by: expected one of {', '.join(BY_CHOICES)}, got {prune.by!r}")
    names = [member_name(keep) for keep in prune.keep]
    if len(set(names)) != len(names):
        raise ConfigError(f"prune.keep: each share once, got {list(prune.keep)}")


def _identity(config: RunConfig, keep: float) -> dict[str, Any]:
    """What a member's scores depend on besides the parent's weights (a kept member must match it)."""
    prune = dataclasses.asdict(config.prune)
    prune.pop("keep")
    return {"keep": keep, **prune, "seed": config.distill.seed}


def _kept_member(folder: Path, identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """A finished member's metrics when its folder was made with the same settings, else None."""
    try:
        metrics = read_json_object(folder / "metrics.json", "member metrics")
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("prune_identity") == dict(identity) else None


def _recover(model: torch.nn.Module, config: RunConfig, inputs: Inputs, folder: Path, pad_token_id: int) -> float:
    """`prune.recover_steps` steps of the run's distillation loss on the pruned student; returns seconds."""
    settings = dataclasses.replace(
        config.distill, max_steps=config.prune.recover_steps, eval_every_steps=0, checkpoint_every_steps=0,
        learning_rate=config.prune.recover_learning_rate or config.distill.learning_rate)
    began = time.perf_counter()
    distill.train(model, inputs.train_features, settings, teacher=inputs.teacher_logits, out_dir=folder,
                  pad_token_id=pad_token_id, resume=False, precision_cache=config.data.cache_dir)
    shutil.rmtree(folder / "checkpoint", ignore_errors=True)  # the member's weights are saved as model/
    return time.perf_counter() - began


def _score(model: torch.nn.Module, config: RunConfig, inputs: Inputs, device: torch.device, folder: Path,
           pad_token_id: int, measure_latency: bool) -> dict[str, Any]:
    """The member's validation metrics at a threshold of its own; per-question scores and predictions written."""
    metrics = make_evaluator(config, inputs.val_features, device, pad_token_id)(model, 0)
    write_per_question(folder, metrics.pop("_per_question"), step=0, na_threshold=metrics["na_threshold"])
    write_atomically(folder / "predictions.json", json.dumps(metrics.pop("_predictions"), indent=1))
    write_atomically(folder / "null_odds.json", json.dumps(metrics.pop("_null_odds"), indent=1))
    metrics.update(count_parameters(model))
    if measure_latency:
        metrics.update(measured_latency(model, config, device))
    return metrics


def _member(parent: torch.nn.Module, fisher: Any, keep: float, config: RunConfig, inputs: Inputs,
            device: torch.device, folder: Path, *, parent_metrics: Mapping[str, Any], command: list[str],
            measure_latency: bool) -> dict[str, Any]:
    """Prune `parent` to `keep`, recover if asked, score, and write the member's run folder; its metrics."""
    began = time.perf_counter()
    pad_token_id = inputs.tokenizer.pad_token_id or 0
    member_config = dataclasses.replace(config, prune=dataclasses.replace(config.prune, keep=(keep,)))
    write_run_header(folder, member_config, device, command)
    pruned = prune_model(parent, fisher, keep=keep, by=config.prune.by, features=inputs.train_features,
                         seq_length=config.evaluate.latency_seq_length, rearrange=config.prune.rearrange,
                         tune_windows=config.prune.tune_windows, seed=config.distill.seed,
                         pad_token_id=pad_token_id, pad_multiple=config.distill.pad_multiple, device=device)
    pruned_seconds = time.perf_counter() - began
    recover_seconds = (_recover(pruned.model, config, inputs, folder, pad_token_id)
                       if config.prune.recover_steps else 0.0)
    pruned.model.eval()
    metrics = _score(pruned.model, config, inputs, device, folder, pad_token_id, measure_latency)
    model_dir = save_student(pruned.model, folder / "model", inputs.tokenizer)
    metrics["bytes_on_disk"] = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    metrics.update(
        prune_keep=keep, prune_by=config.prune.by, prune_share=pruned.share,
        prune_heads_per_layer=json.dumps(pruned.heads_per_layer),
        prune_neurons_per_layer=json.dumps(pruned.neurons_per_layer),
        prune_recover_steps=config.prune.recover_steps, prune_seconds=round(pruned_seconds, 2),
        recover_seconds=round(recover_seconds, 2), wall_seconds=round(time.perf_counter() - began, 2),
        step=parent_metrics.get("step"), total_steps=parent_metrics.get("total_steps"),
        parent_non_embedding_parameters=parent_metrics.get("non_embedding_parameters"),
        parent_parameters=parent_metrics.get("parameters"), val_questions=len(inputs.val_features.examples),
        prune_identity=_identity(config, keep))
    write_json(folder / "prune.json", {"keep": keep, "share": pruned.share, "info": pruned.info,
                                       "heads_per_layer": pruned.heads_per_layer,
                                       "neurons_per_layer": pruned.neurons_per_layer}, indent=1)
    write_atomically(folder / "metrics.json", json.dumps(metrics, indent=2, default=str))  # last: the member is done
    log.info("family %s: keep %.2f -> share %.3f, %s non-embedding parameters, f1 %.2f (%.0f s)", folder.name, keep,
             pruned.share, f"{metrics['non_embedding_parameters']:,}", metrics.get("f1", float("nan")),
             metrics["wall_seconds"])
    return metrics


def prune_family(config: RunConfig, run_dir: str | Path, *, inputs: Inputs | None = None, device: str | None = None,
                 measure_latency: bool = False, command: list[str] | None = None) -> list[dict[str, Any]]:
    """Every member `config.prune.keep` asks for, of the trained run in `run_dir`; writes family.json.

    Returns [{"name", "keep", "run_dir", "metrics"}] in the order of prune.keep ([] when it is empty).
    """
    check_settings(config)
    run_dir = Path(run_dir)
    if not config.prune.keep:
        return []
    if not (run_dir / "model").is_dir():
        raise FileNotFoundError(f"{run_dir}: no model/ folder (a finished run folder is pruned)")
    torch_device = resolve_device(device or config.distill.device)
    parent_metrics = read_json_object(run_dir / "metrics.json", "run metrics")
    parent = load_student(run_dir / "model").to(torch_device).eval()
    command = command or ["tune-distill", "prune", "--run", str(run_dir), "--keep",
                          *(str(keep) for keep in config.prune.keep)]
    fisher, members = None, []
    for keep in config.prune.keep:
        folder = run_dir / FAMILY_DIR / member_name(keep)
        metrics = _kept_member(folder, _identity(config, keep))
        if metrics is None:
            if inputs is None:
                inputs = prepare_inputs(config, torch_device, teacher_logits_needed=True)
            if fisher is None:
                began = time.perf_counter()
                fisher = measure_fisher(parent, inputs.train_features, teacher=inputs.teacher_logits,
                                        windows=config.prune.windows, seed=config.distill.seed,
                                        pad_token_id=inputs.tokenizer.pad_token_id or 0,
                                        pad_multiple=config.distill.pad_multiple, device=torch_device)
                log.info("family: Fisher information on %d windows in %.0f s", fisher.windows,
                         time.perf_counter() - began)
            shutil.rmtree(folder, ignore_errors=True)  # what a member cut short left
            metrics = _member(parent, fisher, keep, config, inputs, torch_device, folder,
                              parent_metrics=parent_metrics, command=command, measure_latency=measure_latency)
        members.append({"name": folder.name, "keep": keep, "run_dir": str(folder), "metrics": metrics})
    write_json(run_dir / FAMILY_FILE, {"parent": str(run_dir), "by": config.prune.by, "members": members}, indent=1)
    return members


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tune-distill prune`."""
    parser.add_argument("--run", dest="run_dir", required=True,
                        help="a finished run folder (its model/ and config.yaml)")
    parser.add_argument("--keep", nargs="+", type=float, metavar="SHARE",
                        help="shares of the non-embedding parameters (or FLOPs: --set prune.by=flops) each member "
                             "keeps, e.g. 0.8 0.7 0.6 (default: the run's prune.keep)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the run's distill.device)")
    parser.add_argument("--latency", action="store_true", help="also time each member (evaluate.latency_*)")
    parser.add_argument("--set", action="append", default=[], metavar="prune.FIELD=VALUE",
                        help="override a prune setting (prune.windows, prune.tune_windows, prune.rearrange, "
                             "prune.recover_steps, prune.recover_learning_rate, prune.by); repeatable")


def command(args: argparse.Namespace) -> dict[str, Any]:
    """Prune a finished run into its family; print one line per member and return the family."""
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"--run {run_dir}: no config.yaml (expected a run folder from tune-distill distill or "
                          "a sweep trial's run/)")
    config = load_config(run_dir / "config.yaml")
    overrides = dict(parse_override(text) for text in args.set)
    if any(not key.startswith("prune.") for key in overrides):
        raise ConfigError(f"--set: only prune.* settings change a family, got {sorted(overrides)}")
    if args.keep:
        overrides["prune.keep"] = list(args.keep)
    config = apply_overrides(config, overrides)
    if not config.prune.keep:
        raise ConfigError("--keep: give at least one share (the run's config.yaml has no prune.keep)")
    members = prune_family(config, run_dir, device=args.device, measure_latency=args.latency)
    for member in members:
        m = member["metrics"]
        print(f"{member['name']}: share {m['prune_share']:.3f}, {m['non_embedding_parameters']:,} non-embedding "
              f"parameters, exact {m.get('exact', float('nan')):.2f}, f1 {m.get('f1', float('nan')):.2f}, "
              f"span f1 {m.get('HasAns_f1_always_answer', float('nan')):.2f} -> {member['run_dir']}")
    return {"members": members}
