"""SQuAD 2.0 questions: read the official JSON layout (or `hub:squad_v2:<split>`) and check it strictly.

Every error names the file, the question id and what was expected: an answer must sit at its
answer_start, is_impossible must agree with the answers, question ids must be unique (across all
sources read together).

Must not know: tokenizers, features, models, training or metrics.

Example (CPU, seconds):
    python -c "from tune_distill.data import load_examples; print(len(load_examples('../shared/data/squad2/val.json')))"
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tune_distill.files import parse_json

logger = logging.getLogger(__name__)

HUB_PREFIX = "hub:"


class DataError(ValueError):
    """Unusable input data or tokenizer; the message names the file, field and question id."""


@dataclass(frozen=True)
class SquadExample:
    """One SQuAD 2.0 question with its context; unanswerable questions have no answers."""

    id: str
    title: str
    context: str
    question: str
    answer_texts: tuple[str, ...]
    answer_starts: tuple[int, ...]
    is_impossible: bool


def _require(mapping: Any, field: str, expected: type | tuple[type, ...], where: str) -> Any:
    """mapping[field], checked to be of the expected type; DataError naming `where` otherwise."""
    if not isinstance(mapping, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(mapping).__name__}")
    if field not in mapping:
        raise DataError(f"{where}: missing field {field!r}")
    value = mapping[field]
    # bool is an int in Python: never accept it where a number is expected.
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in _as_tuple(expected)):
        names = " or ".join(t.__name__ for t in _as_tuple(expected))
        raise DataError(f"{where}: field {field!r} must be {names}, got {type(value).__name__} {value!r:.60}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _build_example(
    source: str,
    question_id: str,
    title: str,
    context: str,
    question: str,
    answers: Sequence[tuple[str, int]],
    is_impossible: bool,
) -> SquadExample:
    """A checked SquadExample: answers must sit at their answer_start and agree with is_impossible."""
    where = f"{source}: question {question_id!r}"
    if not question.strip():
        raise DataError(f"{where}: the question text is empty")
    if not context.strip():
        raise DataError(f"{where}: the context is empty")
    if is_impossible and answers:
        raise DataError(f"{where}: is_impossible is true but it has {len(answers)} answer(s); expected none")
    if not is_impossible and not answers:
        raise DataError(f"{where}: is_impossible is false but 'answers' is empty; expected at least one answer")
    for number, (text, start) in enumerate(answers):
        if not text:
            raise DataError(f"{where}: answer {number} has an empty text")
        found = context[start : start + len(text)]
        if start < 0 or found != text:
            raise DataError(
                f"{where}: answer {number} answer_start={start} does not point at its text {text!r} "
                f"(the context there reads {found!r})"
            )
    return SquadExample(
        id=question_id,
        title=title,
        context=context,
        question=question,
        answer_texts=tuple(text for text, _ in answers),
        answer_starts=tuple(start for _, start in answers),
        is_impossible=is_impossible,
    )


def _examples_from_json(path: Path) -> list[SquadExample]:
    """Parse and check an official-layout SQuAD 2.0 JSON file."""
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a data file (expected a SQuAD 2.0 JSON file)")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None
    document = parse_json(text, str(path), DataError)
    articles = _require(document, "data", list, f"{path} (top level)")
    examples: list[SquadExample] = []
    seen: set[str] = set()
    for article_number, article in enumerate(articles):
        article_where = f"{path}: article {article_number}"
        title = _require(article, "title", str, article_where)
        paragraphs = _require(article, "paragraphs", list, f"{article_where} ({title!r})")
        for paragraph_number, paragraph in enumerate(paragraphs):
            paragraph_where = f"{article_where} ({title!r}) paragraph {paragraph_number}"
            context = _require(paragraph, "context", str, paragraph_where)
            questions = _require(paragraph, "qas", list, paragraph_where)
            for question_number, qa in enumerate(questions):
                question_id = _require(qa, "id", str, f"{paragraph_where} question {question_number}")
                where = f"{path}: question {question_id!r}"
                if question_id in seen:
                    raise DataError(f"{where}: duplicate question id (each id must appear once)")
                seen.add(question_id)
                question = _require(qa, "question", str, where)
                is_impossible = _require(qa, "is_impossible", bool, where)
                answers = []
                for answer_number, answer in enumerate(_require(qa, "answers", list, where)):
                    answer_where = f"{where} answer {answer_number}"
                    text = _require(answer, "text", str, answer_where)
                    start = _require(answer, "answer_start", int, answer_where)
                    answers.append((text, start))
                examples.append(
                    _build_example(str(path), question_id, title, context, question, answers, is_impossible)
                )
    if not examples:
        raise DataError(f"{path}: no questions found (expected data[].paragraphs[].qas[] entries)")
    return examples


def parse_hub_source(source: str) -> tuple[str, str]:
    """'hub:squad_v2:validation' -> ('squad_v2', 'validation')."""
    parts = source.split(":")
    if len(parts) != 3 or parts[0] != "hub" or not parts[1] or not parts[2]:
        raise DataError(f"{source}: hub sources are written 'hub:<dataset>:<split>', e.g. 'hub:squad_v2:train'")
    if parts[1] != "squad_v2":
        raise DataError(f"{source}: only the squad_v2 dataset is supported from the hub")
    return parts[1], parts[2]


def _examples_from_hub(source: str) -> list[SquadExample]:
    """Load a split of squad_v2 through `datasets` (needs the network or a filled HF cache)."""
    import datasets  # imported here: only hub sources need it

    name, split = parse_hub_source(source)
    logger.info("data: loading %s split %s through datasets", name, split)
    rows = datasets.load_dataset(name, split=split)
    examples: list[SquadExample] = []
    seen: set[str] = set()
    for row in rows:
        question_id = row["id"]
        if question_id in seen:
            raise DataError(f"{source}: question {question_id!r}: duplicate question id")
        seen.add(question_id)
        answers = list(zip(row["answers"]["text"], row["answers"]["answer_start"]))
        examples.append(
            _build_example(
                source, question_id, row["title"], row["context"], row["question"], answers, not answers
            )
        )
    if not examples:
        raise DataError(f"{source}: no questions found")
    return examples


def load_examples(source: str, max_examples: int = 0) -> list[SquadExample]:
    """Every question of one SQuAD 2.0 source (a JSON path or 'hub:squad_v2:<split>'), checked.

    The whole source is checked even when only the first `max_examples` (0 = all) are returned.
    """
    source = str(source)
    if source.startswith(HUB_PREFIX):
        examples = _examples_from_hub(source)
    else:
        examples = _examples_from_json(Path(source))
    return examples[:max_examples] if max_examples > 0 else examples


def load_many(sources: Sequence[str], max_examples: int = 0) -> list[SquadExample]:
    """Questions of several sources in order; ids must be unique across all of them.

    `max_examples` (0 = all) keeps the first N questions of the concatenation.
    """
    if isinstance(sources, (str, Path)):
        sources = [str(sources)]
    if not sources:
        raise DataError("no data sources given")
    examples: list[SquadExample] = []
    first_source: dict[str, str] = {}
    for source in sources:
        for example in load_examples(str(source)):
            if example.id in first_source:
                raise DataError(
                    f"{source}: question {example.id!r}: duplicate question id, already in {first_source[example.id]}"
                )
            first_source[example.id] = str(source)
            examples.append(example)
    return examples[:max_examples] if max_examples > 0 else examples
