"""`tune-distill confirm`: the sweep's claims checked on a split it never saw.

A Pareto set chosen on the validation split is optimistic on new data (the winner's curse). This re-scores the
baseline, the Pareto students and any `--trial` on another SQuAD 2.0 file, each with the no-answer threshold
it chose on validation applied unchanged, and recomputes the summary's claims there with paired standard
errors (claims.paired_claims; the same questions for every student), judged on each split by the error with
its questions grouped by paragraph (by article where the split has enough articles; claims.judging_level), the
grouping read from the split's file (the validation file the baseline's config.yaml names, and --data). It
also says what each student does deployed at its threshold on each split (deployment.deployed: answer rates,
HasAns / NoAns exact) and flags, in confirm.json and on the terminal, a student that answers (almost) nothing.
It refuses a split that shares articles (titles) or question ids with the data the sweep trained or validated
on (the questions its runs used: `data.max_*_examples` counted), naming how many overlap.

Writes into --out: `confirm.csv` (one row per student: size, validation and confirmation accuracy, gains over
the baseline with their paired errors per question, by paragraph and by article, answer rates and whether it
abstains on each split), `confirm.json` (the claims on validation, recomputed for these students from their
run folders' per_question.json where kept, and on the confirmation split; `deployment`: each student at its
threshold on both splits), `confirm.png` (the two frontiers side by side) and `trials/<id>/` (metrics and
per-question scores of each student on the split). An --out that is or is inside a run's folders (or is a sweep
folder itself) is refused; a confirm that fails leaves no folder it made and no file it added.

The sweep is a folder, or its remote storage_path (s3://bucket/prefix): sweep.json, trials.jsonl
and summary.json come from there, and each chosen trial's run folder from
`<storage_path>/<name>/trial_*_<id>/run`, copied into `--out/sweep/`.

`--carve-from FILE --articles N` first writes `--data` as the last N articles of FILE that the sweep
never trained or validated on (none of their questions used), e.g. training articles past the sweep's
`data.max_train_examples`, and its record `<data>.carve.json`; an existing `--data` or `<data>.carve.json`
with other contents is refused, never replaced (a rerun with the same arguments writes the same files);
`--all-trials` confirms every finished trial, so that the share claim covers all students as on validation.

`--held-apart` (`confirm_held_apart`) confirms on the validation articles a sweep kept apart from its choice (the
sweep setting `held_apart.articles`, sweep/held_apart.py; the file its sweep.json records, refused if changed):
the baseline, the Pareto set and the students the findings' claims name, into `<sweep>/held-apart/`, then
rewrites the report, whose summary.json `held_apart` and findings carry each claim's figure there
(held_apart_report.py). `after_sweep` does it when such a sweep finishes (`tune-distill sweep`); a failure there
is a WARNING with this command, never the sweep's records lost.

The sweep folder is read as data (it may come from elsewhere): trials.jsonl and sweep.json through
records.py's checked readers, summary.json through report.read_summary, each bad file one line naming it
and the field; run folders only inside the sweep folder (records.resolve_run_dir), never through the
absolute paths its records name; nothing is written to any storage.

Must not know: Ray, searchers, training, how a sweep ran.

Example (CPU, minutes: 7 students on 1,630 questions):
    tune-distill confirm --sweep sweeps/cpu --data ../shared/data/squad2/test.json --out sweeps/cpu/confirm
    tune-distill confirm --sweep sweeps/smoke --held-apart   # a sweep with held_apart.articles set
    tune-distill confirm --sweep sweeps/cpu --carve-from ../shared/data/squad2/train.json --articles 5 \
        --data sweeps/cpu/test-carved.json --out sweeps/cpu/confirm --all-trials
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from tune_distill import claims, held_apart_report, remote
from tune_distill.config import ConfigError, RunConfig, load_config
from tune_distill.data import SquadExample, file_fingerprint, load_features, load_many
from tune_distill.deployment import RULE as DEPLOYMENT_RULE
from tune_distill.deployment import deployed, frontier_statement
from tune_distill.files import output_folder, read_json_object, write_atomically, write_json
from tune_distill.records import read_sweep_settings, read_trials, resolve_run_dir, run_roots, write_trials
from tune_distill.report import read_summary, report_sweep
from tune_distill.runtime import resolve_device
from tune_distill.sweep.held_apart import RECORD, recorded_file

log = logging.getLogger(__name__)

RUN_FILES = ("config.yaml", "metrics.json", claims.PER_QUESTION_FILE)


class ConfirmError(ConfigError):
    """Why a confirmation cannot be made; the message names the file, trial or option."""


def data_overlap(used: Sequence[SquadExample], split: Sequence[SquadExample]) -> dict[str, int]:
    """How many of the split's article titles and question ids the `used` questions share."""
    titles = {example.title for example in used}
    ids = {example.id for example in used}
    return {"titles": len({example.title for example in split} & titles),
            "ids": len({example.id for example in split} & ids)}


def check_unseen(config: RunConfig, split: Sequence[SquadExample], data_file: str) -> None:
    """Refuse `split` if it shares titles or ids with the questions the sweep trained or validated on."""
    data = config.data
    problems = []
    for what, sources, limit in (("training", list(data.train_files), data.max_train_examples),
                                 ("validation", [data.val_file], data.max_val_examples)):
        missing = [source for source in sources if not source.startswith("hub:") and not Path(source).is_file()]
        if missing:
            raise ConfirmError(f"the sweep's {what} data {missing[0]} is not here (run confirm where the sweep's data "
                               "paths resolve, e.g. from the folder the sweep was started in)")
        shared = data_overlap(load_many(sources, limit), split)
        if shared["titles"] or shared["ids"]:
            problems.append(f"{shared['titles']} article title(s) and {shared['ids']} question id(s) with the "
                            f"sweep's {what} data")
    if problems:
        raise ConfirmError(f"--data {data_file} shares {' and '.join(problems)}; confirm on articles the sweep "
                           "never saw")


def used_examples(config: RunConfig) -> list[SquadExample]:
    """The questions a run trained and validated on (`data.max_*_examples` counted)."""
    data = config.data
    return load_many(list(data.train_files), data.max_train_examples) + \
        load_many([data.val_file], data.max_val_examples)


def carve(config: RunConfig, source: str, articles: int, out: str | Path) -> dict[str, Any]:
    """Write the last `articles` articles of `source` that `config`'s run never used into `out` (SQuAD 2.0 JSON).

    An article is unused when none of its questions is among the questions the run trained or
    validated on (by title and by id), so a partly used article is never taken. Articles keep their
    order in `source`. Returns what was written (titles, questions, unanswerable).
    """
    if articles < 1:
        raise ConfirmError(f"--articles {articles}: expected at least 1")
    path = Path(source)
    if not path.is_file():
        raise ConfirmError(f"--from {source}: data file not found")
    if Path(out).is_dir():
        raise ConfirmError(f"--data {out}: a folder, not a file (expected the SQuAD 2.0 JSON file to carve into)")
    load_many([source])  # checks every field of the file (DataError names the question)
    used = used_examples(config)
    titles, ids = {example.title for example in used}, {example.id for example in used}
    document = json.loads(path.read_text(encoding="utf-8"))
    unused = [article for article in document["data"] if article["title"] not in titles
              and not any(qa["id"] in ids for paragraph in article["paragraphs"] for qa in paragraph["qas"])]
    if len(unused) < articles:
        raise ConfirmError(f"--from {source}: only {len(unused)} of its {len(document['data'])} articles are unused "
                           f"by the sweep's training and validation questions; asked for {articles}")
    chosen = unused[-articles:]
    questions = [qa for article in chosen for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    payload = {"version": document.get("version", "v2.0"), "data": chosen}
    if Path(out).exists() and _json_or_none(Path(out)) != payload:
        raise ConfirmError(f"--data {out}: exists with other questions; carve into a new file (a rerun may reuse "
                           "the same one)")
    result = {"from": str(source), "from_sha256": file_fingerprint(source), "out": str(out),
              "titles": [article["title"] for article in chosen], "questions": len(questions),
              "unanswerable": sum(bool(qa.get("is_impossible")) for qa in questions)}
    record = Path(str(out) + ".carve.json")
    if record.exists() and _json_or_none(record) != result:
        raise ConfirmError(f"--data {out}: its carve record {record} exists and says otherwise (another source, "
                           "articles or version of the file); carve into a new file, or move the old record aside")
    write_json(Path(out), payload, indent=None)
    write_json(record, result)
    return result


def _json_or_none(path: Path) -> Any:
    """A JSON file's value, or None when it is not JSON (it then differs from anything carve would write)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _trial_folder(filesystem: Any, experiment: str, trial_id: str) -> str | None:
    import pyarrow.fs as pafs

    entries = filesystem.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
    matches = sorted(entry.path for entry in entries
                     if entry.type == pafs.FileType.Directory and entry.path.rstrip("/").endswith(f"_{trial_id}"))
    return f"{matches[-1]}/run" if matches else None


def fetch_remote_sweep(filesystem: Any, path: str, local: Path, trial_ids: Sequence[str] | None = None) -> Path:
    """Copy a remote sweep's files into `local`, and the run folders (config, metrics, per-question scores,
    model) of `trial_ids` (default: every trial) to `local/runs/<id>`; records then point there."""
    import pyarrow.fs as pafs

    local.mkdir(parents=True, exist_ok=True)
    for name in ("sweep.json", "trials.jsonl", "summary.json"):
        remote.download_file(filesystem, f"{path}/{name}", local / name)
    if not (local / "trials.jsonl").is_file():
        raise ConfirmError(f"{path}: no trials.jsonl (is it a sweep's storage_path?)")
    name = (read_sweep_settings(local, ConfirmError).get("config") or {}).get("name") or "tune"
    if "/" in name or name in (".", ".."):
        raise ConfirmError(f"{local / 'sweep.json'}: config.name: expected a folder name, got {name!r}")
    records = read_trials(local)
    wanted = set(trial_ids) if trial_ids is not None else {str(record["trial_id"]) for record in records}
    fetched = []
    for record in records:
        trial_id = str(record["trial_id"])
        run_folder = _trial_folder(filesystem, f"{path}/{name}", trial_id) if trial_id in wanted else None
        if run_folder is not None:
            target = local / "runs" / trial_id
            for name_ in RUN_FILES:
                remote.download_file(filesystem, f"{run_folder}/{name_}", target / name_)
            for entry in filesystem.get_file_info(pafs.FileSelector(f"{run_folder}/model", allow_not_found=True)):
                if entry.type == pafs.FileType.File:
                    remote.download_file(filesystem, entry.path, target / "model" / entry.base_name)
            record = {**record, "run_dir": str(target)}
        fetched.append(record)
    write_trials(local, fetched)
    return local


def _choose(records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
            asked: Sequence[str], every: bool = False) -> list[tuple[Mapping[str, Any], str]]:
    """(record, role) of the baseline, the Pareto students and the asked trials (`every`: all finished trials)."""
    if every:
        asked = [*asked, *(str(record["trial_id"]) for record in records
                           if record.get("status") in ("complete", "stopped"))]
    by_id = {str(record["trial_id"]): record for record in records}
    unknown = [trial for trial in asked if trial not in by_id]
    if unknown:
        raise ConfirmError(f"--trial {unknown[0]}: no such trial in the sweep (trials: {', '.join(sorted(by_id))})")
    base = (summary.get("baseline") or {}).get("trial_id")
    if base is None or base not in by_id:
        raise ConfirmError("the sweep has no completed baseline trial to compare with (summary.json names none)")
    chosen = [(by_id[base], "baseline")]
    chosen += [(by_id[str(t)], "pareto") for t in summary.get("pareto_trials") or () if str(t) != base]
    seen = {str(record["trial_id"]) for record, _ in chosen}
    chosen += [(by_id[t], "asked") for t in dict.fromkeys(asked) if t not in seen]
    return chosen


def score_student(model_dir: Path, config: RunConfig, examples_file: str, na_threshold: float, *,
                  device: torch.device, batch_size: int, cache_dir: str | None,
                  max_examples: int = 0) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Metrics and per-question scores of one saved student on a file, at the given no-answer threshold."""
    from transformers import AutoTokenizer

    from tune_distill.evaluate import postprocess, predict_logits
    from tune_distill.scoring import evaluate_predictions, per_question_scores
    from tune_distill.student import load_student

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    data = config.data
    features = load_features([examples_file], tokenizer, kind="eval", max_seq_length=data.max_seq_length,
                             doc_stride=data.doc_stride, max_query_length=data.max_query_length,
                             max_examples=max_examples, cache_dir=cache_dir)
    model = load_student(model_dir).to(device).eval()
    start, end = predict_logits(model, features, batch_size, device, "fp32", config.distill.pad_multiple)
    best, odds = postprocess(features.examples, features, start, end, config.evaluate.n_best_size,
                             config.evaluate.max_answer_length)
    metrics = evaluate_predictions(features.examples, best, odds, na_threshold)
    return metrics, per_question_scores(features.examples, best, odds, na_threshold)


ROLES = {  # a confirmed student's role: its marker, colour and legend entry in confirm.png
    "baseline": ("*", "black", "baseline"),
    "pareto": ("o", "tab:blue", "Pareto student (chosen on validation)"),
    "asked": ("s", "tab:orange", "other confirmed student (--trial, --all-trials)"),
}


def _frontier(rows: Sequence[Mapping[str, Any]], accuracy: str, size: str, path: Path) -> None:
    """Validation and confirmation accuracy against size, side by side (paired errors as bars), each point
    labelled with its trial id where no other label or point is (plots.label_points), a legend per role."""
    from tune_distill.plots import freeze_layout, label_points, open_pyplot, save_figure, size_label

    order = {role: index for index, role in enumerate(ROLES)}
    rows = sorted(rows, key=lambda r: (order.get(r["role"], len(order)), r[size]))  # labelled in this order
    with open_pyplot() as plt:
        figure, axes = plt.subplots(1, 2, figsize=(12, 5), dpi=120, sharey=True, layout="constrained")
        figure.suptitle(f"{accuracy}: the sweep's validation split against the confirmation split "
                        "(bars: the paired standard error that judged the gain over the baseline)", fontsize=10)
        shown: dict[str, Any] = {}
        labels: dict[Any, list[tuple[float, float, str, float]]] = {axis: [] for axis in axes}
        for axis, split, words in zip(axes, ("validation", "confirmation"),
                                      ("validation (the sweep chose on it)", "confirmation (never seen by the sweep)")):
            for row in rows:
                value = row.get(f"{split}_{accuracy}")
                if value is None or row.get(size) is None:
                    continue
                error = row.get(f"{split}_judging_se") or row.get(f"{split}_gain_se") or 0.0
                marker, colour, name = ROLES.get(row["role"], ("D", "tab:green", str(row["role"])))
                drawn = axis.errorbar(row[size] / 1e6, value, yerr=error, fmt=marker, color=colour, capsize=3,
                                      ms=9 if marker == "*" else 6, zorder=4 - order.get(row["role"], 2))
                shown.setdefault(name, drawn)
                labels[axis].append((row[size] / 1e6, value, str(row["trial_id"]), error))
            axis.set_title(words, fontsize=9)
            axis.set_xlabel(size_label(size))
            axis.grid(alpha=0.3)
            axis.margins(x=0.12, y=0.08)
        axes[0].set_ylabel(accuracy)
        if shown:
            figure.legend(list(shown.values()), list(shown), loc="outside lower center", ncols=len(shown), fontsize=8)
        freeze_layout(figure)
        for axis in axes:
            label_points(axis, labels[axis])
        save_figure(figure, path)


def confirm(sweep: str, data_file: str, out: str | Path, *, trials: Sequence[str] = (), device: str = "auto",
            batch_size: int = 64, cache_dir: str | None = None, storage_endpoint: str = "",
            max_examples: int = 0, every: bool = False, carve_from: str | None = None,
            carve_articles: int = 0) -> dict[str, Any]:
    """Re-score the sweep's baseline, Pareto students and `trials` (`every`: all finished trials) on `data_file`;
    write and return confirm.json. With `carve_from`, `data_file` is first written as the last `carve_articles`
    articles of that file the sweep never used (`carve`). An --out that is or is inside a run's folders is refused,
    and a failed confirm leaves no folder it made and no file it added (files.output_folder)."""
    out = Path(out)
    with output_folder(out, "--out", ConfirmError):
        folder = _sweep_folder(sweep, storage_endpoint, out)
        summary = read_summary(folder / "summary.json", ConfirmError)
        objectives = summary.get("objectives") or [{"name": "exact", "direction": "max"},
                                                    {"name": "parameters", "direction": "min"}]
        accuracy = next((o["name"] for o in objectives if o["direction"] == "max"), "exact")
        size = next((o["name"] for o in objectives if o["direction"] == "min"), "parameters")
        chosen = _choose(read_trials(folder), summary, list(trials), every)
        runs = _run_folders(folder, chosen)
        base_config = load_config(runs[str(chosen[0][0]["trial_id"])] / "config.yaml")
        carved = carve(base_config, carve_from, carve_articles, data_file) if carve_from else None
        split = load_many([data_file], max_examples)
        check_unseen(base_config, split, data_file)
        resolved_device = resolve_device(device)
        rows = [_confirm_student(record, role, runs[str(record["trial_id"])], data_file, out, accuracy, size,
                                 device=resolved_device, batch_size=batch_size, cache_dir=cache_dir,
                                 max_examples=max_examples) for record, role in chosen]
        result: dict[str, Any] = {"sweep": str(sweep), "data": str(data_file),
                                  "data_sha256": file_fingerprint(data_file) if Path(data_file).is_file() else None,
                                  "questions": len(split), "accuracy": accuracy, "size": size, "carved": carved}
        groupings = {"validation": claims.read_grouping(base_config.data.val_file),
                     "confirmation": claims.read_grouping(data_file)}
        for split_name in ("validation", "confirmation"):
            result[split_name] = _judge(rows, split_name, accuracy, size, groupings[split_name])
        result["deployment"] = _deployment(rows)
        public = [{key: value for key, value in row.items() if not key.startswith("_")} for row in rows]
        result["trials"] = public
        result["note"] = ("claims over the confirmed students only (baseline, Pareto set, --trial); on validation they "
                          "use the per-question scores the run folders kept (none: 'not judged')")
        import pandas as pd

        write_atomically(out / "confirm.csv", pd.DataFrame(public).to_csv(index=False))
        _frontier(public, accuracy, size, out / "confirm.png")
        write_json(out / "confirm.json", result)
        return json.loads(json.dumps(result, default=str))


def confirm_held_apart(sweep: str | Path, *, trials: Sequence[str] = (), every: bool = False, device: str = "auto",
                       batch_size: int = 64, cache_dir: str | None = None, storage_path: str = "",
                       storage_endpoint: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """Confirm on a sweep folder's held-apart articles (its sweep.json's held_apart record, the file unchanged
    since the split) the baseline, the Pareto students, the students the findings' claims name
    (held_apart_report.claim_trials) and `trials`, into <sweep>/held-apart/ (confirm); then rewrite the report
    (report_sweep, copied to `storage_path` where given), whose summary.json and findings carry the figures there.
    Returns (confirm.json's contents, the new summary). The feature cache is the sweep's own (<sweep>/cache)
    unless `cache_dir`."""
    if remote.is_remote(str(sweep)):
        raise ConfirmError(f"--sweep {sweep} --held-apart: needs the sweep's folder here (the results go into "
                           "<sweep>/held-apart), not its storage")
    folder = Path(sweep)
    record = read_sweep_settings(folder, ConfirmError).get(RECORD)
    if not record:
        raise ConfirmError(f"--held-apart: {folder / 'sweep.json'} records no held-apart articles (the sweep setting "
                           "held_apart.articles keeps some apart when the sweep starts)")
    data = recorded_file(folder, record, "held_apart", ConfirmError)
    named = held_apart_report.claim_trials(read_summary(folder / "summary.json", ConfirmError)) \
        if (folder / "summary.json").is_file() else []
    if cache_dir is None and (folder / "cache").is_dir():
        cache_dir = str(folder / "cache")
    result = confirm(str(folder), str(data), folder / held_apart_report.HELD_APART_DIR, trials=[*named, *trials],
                     every=every, device=device, batch_size=batch_size, cache_dir=cache_dir)
    return result, report_sweep(folder, storage_path=storage_path, storage_endpoint=storage_endpoint)


def after_sweep(out: str | Path, storage_path: str = "", storage_endpoint: str = "") -> dict[str, Any] | None:
    """The end of a finished sweep that kept validation articles apart: confirm_held_apart, then the report
    (copied to `storage_path` as the sweep's was); returns the new summary. Never raises: the sweep's records are
    written already, and a failure is a WARNING with the command that reruns it. None: nothing was done."""
    command_line = held_apart_report.rerun_command(out)
    try:
        settings = read_sweep_settings(out, ConfirmError)
        if not settings.get(RECORD):
            return None
        if ((settings.get("config") or {}).get("simulate") or {}).get("enabled"):
            log.info("held-apart articles: a simulated sweep trains no students; nothing to confirm")
            return None
        if (settings.get("summary") or {}).get("interrupted"):
            log.info("held-apart articles: confirmed once the sweep is finished (resume it), or now with: %s",
                     command_line)
            return None
        return confirm_held_apart(out, storage_path=storage_path, storage_endpoint=storage_endpoint)[1]
    except Exception as failure:  # noqa: BLE001 - the sweep's records stand; the confirmation can be rerun
        log.warning("the confirmation on the held-apart articles failed (%s: %s); the sweep's records are kept. "
                    "Rerun it with: %s", type(failure).__name__, failure, command_line)
        return None


def _sweep_folder(sweep: str, storage_endpoint: str, out: Path) -> Path:
    """The sweep's folder (a remote sweep's files fetched under out/sweep), refused without trials.jsonl or
    summary.json."""
    if remote.is_remote(sweep):
        filesystem, path = remote.open_location(sweep.rstrip("/"), storage_endpoint, ConfirmError)
        folder = fetch_remote_sweep(filesystem, path, out / "sweep")
    else:
        folder = Path(sweep)
        if not (folder / "trials.jsonl").is_file():
            raise ConfirmError(f"--sweep {sweep}: no trials.jsonl (expected a sweep folder or its s3:// storage)")
    if not (folder / "summary.json").is_file():
        raise ConfirmError(f"--sweep {sweep}: no summary.json (run `tune-distill report --sweep {folder}` first)")
    return folder


def _run_folders(folder: Path, chosen: Sequence[tuple[Mapping[str, Any], str]]) -> dict[str, Path]:
    """trial id -> run folder of each chosen trial (inside the sweep folder, records.resolve_run_dir); refused when
    one lacks model/ or config.yaml."""
    runs = {}
    roots = run_roots(folder, read_sweep_settings(folder, ConfirmError))
    for record, _ in chosen:
        run_dir = resolve_run_dir(folder, str(record["trial_id"]), record.get("run_dir"), record.get("checkpoint"),
                                  roots)
        if run_dir is None or not (run_dir / "model").is_dir() or not (run_dir / "config.yaml").is_file():
            raise ConfirmError(f"trial {record['trial_id']}: its run folder (model/, config.yaml) is not found in "
                               f"{folder} (recorded {record.get('run_dir')}; {folder / 'trials.jsonl'})")
        runs[str(record["trial_id"])] = run_dir
    return runs


def _confirm_student(record: Mapping[str, Any], role: str, run_dir: Path, data_file: str, out: Path, accuracy: str,
                     size: str, **scoring: Any) -> dict[str, Any]:
    """Score one student on the split at its validation threshold; write its metrics and per-question scores
    under out/trials/<id>/ and return its row (validation and confirmation figures; `_`-keys: the scores)."""
    trial_id = str(record["trial_id"])
    validation = read_json_object(run_dir / "metrics.json", "metrics.json", ConfirmError) \
        if (run_dir / "metrics.json").is_file() else dict(record.get("metrics") or {})
    if "na_threshold" not in validation:
        raise ConfirmError(f"trial {trial_id}: no validation na_threshold in {run_dir / 'metrics.json'}")
    config = load_config(run_dir / "config.yaml")
    metrics, scores = score_student(run_dir / "model", config, data_file, float(validation["na_threshold"]),
                                    **scoring)
    write_json(out / "trials" / trial_id / "metrics.json", metrics)
    claims.write_per_question(out / "trials" / trial_id, scores, na_threshold=validation["na_threshold"])
    recorded = {**(record.get("metrics") or {}), **validation}
    log.info("confirm: trial %s (%s): %s %.2f on validation, %.2f here", trial_id, role, accuracy,
             validation.get(accuracy, float("nan")), metrics[accuracy])
    validation_scores = claims.read_per_question(run_dir)
    deployment = {"validation": deployed(recorded, validation_scores, trial_id=trial_id),
                  "confirmation": deployed(metrics, scores, trial_id=trial_id)}
    return {"trial_id": trial_id, "role": role, size: recorded.get(size),
            **{name: recorded.get(name) for name in claims.SIZES if name != size},
            "na_threshold": float(validation["na_threshold"]),
            "validation_" + accuracy: validation.get(accuracy), "confirmation_" + accuracy: metrics[accuracy],
            "confirmation_exact": metrics["exact"], "confirmation_f1": metrics["f1"],
            **{f"{split}_{name}": figures.get(name) for split, figures in deployment.items() for name in DEPLOYED},
            "_validation_scores": validation_scores, "_confirmation_scores": scores, "_deployment": deployment}


DEPLOYED = ("answer_rate", "HasAns_answer_rate", "HasAns_exact", "NoAns_exact", "abstains")  # per split, per row


def _deployment(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per split, what each confirmed student does deployed at its validation threshold (deployment.deployed),
    which abstain, and a sentence saying so."""
    result: dict[str, Any] = {"rule": DEPLOYMENT_RULE}
    for split_name in ("validation", "confirmation"):
        by_trial = {row["trial_id"]: row["_deployment"][split_name] for row in rows}
        result[split_name] = {"by_trial": by_trial,
                              "abstaining": [trial for trial, figures in by_trial.items() if figures.get("abstains")],
                              "statement": frontier_statement(by_trial)}
    return result


def _judge(rows: Sequence[dict[str, Any]], split_name: str, accuracy: str, size: str,
           grouping: claims.Grouping | None = None) -> dict[str, Any]:
    """The claims on one split (claims.paired_claims over the confirmed students, judged by paragraph or article
    with the split's `grouping`); each row gets its `<split>_gain`, `<split>_gain_se` (per question),
    `<split>_gain_se_paragraph`, `<split>_gain_se_article` and `<split>_judging_se` (the error that judged it)."""
    judged = claims.paired_claims([{"trial_id": row["trial_id"], "baseline": row["role"] == "baseline",
                                    "pareto": row["role"] == "pareto", accuracy: row[f"{split_name}_{accuracy}"],
                                    **{name: row.get(name) for name in (size, *claims.SIZES)},
                                    "scores": row[f"_{split_name}_scores"]} for row in rows],
                                  accuracy, size, grouping=grouping)
    for row in rows:
        paired = judged["by_trial"].get(row["trial_id"], {})
        for name in ("gain", "gain_se", "gain_se_paragraph", "gain_se_article", "judging_se"):
            row[f"{split_name}_{name}"] = paired.get(name)
    return judged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tune-distill confirm`."""
    parser.add_argument("--sweep", required=True, help="sweep folder, or its storage_path (s3://bucket/prefix)")
    parser.add_argument("--data", help="SQuAD 2.0 JSON file of articles the sweep never saw (required unless "
                                       "--held-apart)")
    parser.add_argument("--out", help="folder for confirm.csv, confirm.json, confirm.png (required unless "
                                      "--held-apart)")
    parser.add_argument("--held-apart", action="store_true",
                        help="confirm on the validation articles the sweep kept apart from its choice (sweep setting "
                             "held_apart.articles; the file sweep.json records) into <sweep>/held-apart/, then "
                             "rewrite the report: summary.json and its findings carry the figures there")
    parser.add_argument("--trial", action="append", default=[], help="also confirm this trial id (repeatable)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default: no cache)")
    parser.add_argument("--storage-endpoint", default="", help="S3 endpoint of an s3:// sweep (default: AWS)")
    parser.add_argument("--max-examples", type=int, default=0, help="first N questions of --data only (0 = all)")
    parser.add_argument("--all-trials", action="store_true",
                        help="confirm every finished trial, not only the baseline and the Pareto set (the share claim "
                             "is then over all students, as on validation)")
    parser.add_argument("--carve-from", default=None,
                        help="first write --data as the last --articles articles of this SQuAD file that the sweep "
                             "never trained or validated on (a record of them beside it: <data>.carve.json)")
    parser.add_argument("--articles", type=int, default=5, help="articles to carve with --carve-from")


def command(args: argparse.Namespace) -> dict[str, Any]:
    """Confirm as the parsed options say; print the claims on both splits."""
    if args.held_apart:
        if args.data or args.out or args.carve_from or args.max_examples:
            raise ConfirmError("--held-apart: the split and the folder are the sweep's own (<sweep>/held-apart); "
                               "--data, --out, --carve-from and --max-examples do not go with it")
        result, summary = confirm_held_apart(args.sweep, trials=args.trial, every=args.all_trials, device=args.device,
                                             batch_size=args.batch_size, cache_dir=args.cache_dir)
        _print(result, str(Path(args.sweep) / held_apart_report.HELD_APART_DIR))
        print(json.dumps({name: claim.get("statement") for name, claim in summary["findings"].items()
                          if isinstance(claim, dict)}, indent=1))
        return result
    if not args.data or not args.out:
        raise ConfirmError(f"--{'data' if not args.data else 'out'}: required (or --held-apart)")
    result = confirm(args.sweep, args.data, args.out, trials=args.trial, device=args.device,
                     batch_size=args.batch_size, cache_dir=args.cache_dir, storage_endpoint=args.storage_endpoint,
                     max_examples=args.max_examples, every=args.all_trials, carve_from=args.carve_from,
                     carve_articles=args.articles)
    _print(result, args.out, args.data)
    return result


def _print(result: Mapping[str, Any], out: str, data: str = "") -> None:
    """The claims on both splits, the errors that judged them and the deployment, in lines."""
    if result.get("carved"):
        carved = result["carved"]
        print(f"confirm: carved {len(carved['titles'])} articles ({carved['questions']} questions) of "
              f"{carved['from']} into {data}: {', '.join(carved['titles'])}")
    print(json.dumps({split: {name: claim["statement"] for name, claim in result[split]["claims"].items()}
                      for split in ("validation", "confirmation")}, indent=1))
    for split in ("validation", "confirmation"):
        errors = result[split].get("errors") or {}
        if errors:
            print(f"confirm: {split}: claims judged by the paired error {errors['judged_by']}: {errors['why']}")
        if errors.get("warning"):
            print(f"confirm: {split}: warning: {errors['warning']}")
        print(f"confirm: {split}, deployed at the validation thresholds: {result['deployment'][split]['statement']}")
    print(f"confirm: {out}/confirm.csv, confirm.json, confirm.png")
