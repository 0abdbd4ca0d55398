"""Validation articles kept apart from the sweep's choice, for confirming the students it chose.

A sweep that picks the best of many students on validation overstates that student's gain on questions that
did not pick it (the winner's curse). With the sweep setting `held_apart.articles: k` (sweep/config.py), the
base config's `data.val_file` is split by article (`data[].title`) when the sweep is planned: k titles chosen
by a permutation of the titles seeded with `held_apart.seed` (never by any score) go to
`<sweep>/data/validation-held-apart.json`, the rest to `<sweep>/data/validation-select.json`, both SQuAD 2.0
files (the source's `version` kept, articles in the source's order). Every trial's `data.val_file` is the
select file (the sweep's base is changed, so sweep.json says what the trials validated on), and
`data.max_val_examples` applies to it as to any validation file (the trials validate on its first N
questions); the held-apart file is confirmed whole. sweep.json's `held_apart` record keeps the split: the
source file and its sha256, the seed, and per side the file (relative to the sweep folder), its sha256, titles
and question counts. A resumed sweep reuses the recorded files and is refused when either has changed since.
The confirmation itself (after the sweep) is confirm.py's `confirm_held_apart`.

`plan_split` checks and computes the split (reading the source, writing nothing; a bad setting is one
SweepConfigError naming `held_apart.articles` and the file), `write_split` writes the two files atomically
(files.write_atomically) once the sweep's checks have passed, `split_record` is the record for sweep.json.

What it must not know: Ray, trials, models, scores, how the held-apart articles are confirmed.

Example (CPU, instant: which 2 of 4 titles seed 0 keeps apart):
    python -c "from tune_distill.sweep.held_apart import choose_titles; \
print(choose_titles(['a', 'b', 'c', 'd'], 2, seed=0))"
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from tune_distill.config import RunConfig, apply_overrides
from tune_distill.data import SquadExample, file_fingerprint, load_examples, load_many
from tune_distill.files import read_json_object, write_atomically
from tune_distill.search import SearchSpace
from tune_distill.sweep.config import SweepConfig, SweepConfigError

log = logging.getLogger(__name__)

SELECT_FILE = "data/validation-select.json"  # relative to the sweep folder: what every trial validates on
HELD_APART_FILE = "data/validation-held-apart.json"  # the articles kept apart for confirmation
RECORD = "held_apart"  # sweep.json's key for the split's record
SIDES = (("select", SELECT_FILE), ("held_apart", HELD_APART_FILE))


@dataclasses.dataclass(frozen=True)
class Split:
    """A planned (or recorded) split: its record for sweep.json, the questions the trials validate on (the select
    side, data.max_val_examples applied) and, for a fresh sweep, the files' text to write."""

    record: dict[str, Any]
    examples: Sequence[SquadExample]
    texts: Mapping[str, str] = dataclasses.field(default_factory=dict)  # relative file -> its JSON text


def choose_titles(titles: Sequence[str], articles: int, seed: int) -> list[str]:
    """The `articles` titles kept apart: the first of a permutation of the distinct `titles` (in their order)
    seeded with `seed`; the same titles and seed always give the same choice."""
    order = list(dict.fromkeys(titles))
    random.Random(seed).shuffle(order)
    return order[:articles]


def plan_split(config: SweepConfig, space: SearchSpace, out_dir: Path) -> tuple[SweepConfig, Split | None]:
    """The sweep config with every trial's data.val_file the select file, and the split (None without
    held_apart.articles). A fresh sweep's split is computed from the base's validation file (nothing written); a
    resumed one (its sweep.json in `out_dir`) reuses its recorded files, refused when either has changed."""
    settings = config.held_apart
    if not settings.articles:
        return config, None
    varied = sorted(key for key in (*space.names, *space.derived, *space.fixed)
                    if key in ("data.val_file", "data.max_val_examples"))
    if varied:
        raise SweepConfigError(f"held_apart.articles: the space sets {varied[0]}; the held-apart split needs one "
                               "validation file for every trial (set it in the sweep's base)")
    select = str(out_dir / SELECT_FILE)
    if (out_dir / "sweep.json").is_file():
        return config, _recorded(config, out_dir, select)
    run_config = apply_overrides(RunConfig(), config.base)
    split = _split(run_config.data.val_file, settings.articles, settings.seed, run_config.data.max_val_examples)
    log.info("held apart for confirmation: %d of %d validation articles (%d questions, seed %d): %s; the sweep "
             "chooses on the other %d (%d questions)", len(split.record["held_apart"]["titles"]),
             split.record["articles"], split.record["held_apart"]["questions"], settings.seed,
             ", ".join(split.record["held_apart"]["titles"]), len(split.record["select"]["titles"]),
             split.record["select"]["questions"])
    return dataclasses.replace(config, base={**config.base, "data.val_file": select}), split


def _split(source: str, articles: int, seed: int, max_val_examples: int) -> Split:
    """Split `source` by article: the chosen titles' articles to the held-apart side, the rest to the select side."""
    where = f"held_apart.articles: {source}"
    examples = load_examples(source)  # every field checked (DataError names the question)
    document = read_json_object(source, "validation file", SweepConfigError)
    titles = [article["title"] for article in document["data"]]
    distinct = len(set(titles))
    if articles >= distinct:
        raise SweepConfigError(f"{where} has {distinct} article(s) (distinct titles); held_apart.articles must be "
                               f"fewer (at least one article must stay for the sweep to choose on), got {articles}")
    chosen = set(choose_titles(titles, articles, seed))
    sides = {"held_apart": [a for a in document["data"] if a["title"] in chosen],
             "select": [a for a in document["data"] if a["title"] not in chosen]}
    record: dict[str, Any] = {"source": str(source), "source_sha256": file_fingerprint(source), "seed": seed,
                              "articles": distinct, "max_val_examples": max_val_examples}
    texts = {}
    for side, name in SIDES:
        payload = {**({"version": document["version"]} if "version" in document else {}), "data": sides[side]}
        texts[name] = json.dumps(payload, ensure_ascii=False) + "\n"
        questions = [qa for article in sides[side] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
        record[side] = {"file": name, "sha256": hashlib.sha256(texts[name].encode("utf-8")).hexdigest(),
                        "titles": list(dict.fromkeys(a["title"] for a in sides[side])), "questions": len(questions),
                        "unanswerable": sum(bool(qa.get("is_impossible")) for qa in questions)}
    if max_val_examples > 0:
        record["select"]["validated_questions"] = min(max_val_examples, record["select"]["questions"])
    kept = [example for example in examples if example.title not in chosen]
    return Split(record, kept[:max_val_examples] if max_val_examples > 0 else kept, texts)


def _recorded(config: SweepConfig, out_dir: Path, select: str) -> Split:
    """A resumed sweep's split, from its sweep.json: both files present and as recorded, else refused."""
    saved = out_dir / "sweep.json"
    record = read_json_object(saved, "the sweep's record", SweepConfigError).get(RECORD)
    if not isinstance(record, dict):
        raise SweepConfigError(f"{saved}: {RECORD}: no record of the held-apart split (the sweep's held_apart."
                               "articles is set): resume needs the files the trials validated on")
    val_file = apply_overrides(RunConfig(), config.base).data.val_file
    if Path(val_file).resolve() != Path(select).resolve():
        raise SweepConfigError(f"{saved}: config.base.data.val_file: expected the held-apart split's select file "
                               f"{select}, got {val_file}")
    for side, _ in SIDES:
        recorded_file(out_dir, record, side, SweepConfigError)
    source = str(record.get("source") or "")
    if source and Path(source).is_file() and file_fingerprint(source) != record.get("source_sha256"):
        log.warning("held_apart: the validation file %s has changed since the sweep split it; the sweep goes on "
                    "with its recorded split (%s)", source, out_dir / "data")
    return Split(record, load_many([select], apply_overrides(RunConfig(), config.base).data.max_val_examples))


def recorded_file(out_dir: Path, record: Any, side: str, error: type[Exception] = ValueError) -> Path:
    """The file of one side ("select" or "held_apart") of a sweep folder's recorded split (`record`: sweep.json's
    held_apart, read as data), checked: the record's shape, the file inside the folder, present and unchanged
    (its sha256 as recorded). A problem is one line of `error` naming the file or the field."""
    saved = out_dir / "sweep.json"
    entry = record.get(side) if isinstance(record, dict) else None
    names = dict(SIDES)
    if not isinstance(entry, dict) or entry.get("file") != names[side] or not isinstance(entry.get("sha256"), str):
        raise error(f"{saved}: {RECORD}.{side}: expected {{file: {names[side]}, sha256: ...}}, got "
                    f"{json.dumps(entry, default=str)[:80]}")
    path = out_dir / names[side]
    if not path.is_file():
        raise error(f"held_apart: {path} is missing; the sweep's split is kept there (put it back from a copy of the "
                    "sweep folder, or start a new sweep)")
    if file_fingerprint(path) != entry["sha256"]:
        raise error(f"held_apart: {path} has changed since the sweep split it (its sha256 is not {saved} "
                    f"{RECORD}.{side}.sha256); put the file back as it was, or start a new sweep")
    return path


def write_split(split: Split | None, out_dir: Path) -> None:
    """Write a fresh sweep's select and held-apart files (atomically) into `out_dir`; nothing for a resumed one."""
    for name, text in (split.texts.items() if split is not None else ()):
        write_atomically(out_dir / name, text)


def split_record(split: Split | None) -> dict[str, Any]:
    """{held_apart: record} for sweep.json, or {} without a split."""
    return {RECORD: split.record} if split is not None else {}
