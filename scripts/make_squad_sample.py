"""Write the small SQuAD 2.0 sample shipped in data/squad2-sample/ (for `make sweep`'s smoke preset).

Takes whole paragraphs, in file order, from the split files in ../shared/data/squad2 (themselves
the official SQuAD 2.0 dev set split by article), keeping the official JSON format untouched.

Must not know: anything of tune_distill; it only copies JSON.

Example (CPU, instant):
    python scripts/make_squad_sample.py --shared ../shared/data/squad2 --out data/squad2-sample
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (source file, article title, paragraphs kept: None = all)
SAMPLE = {
    "train.json": [("train.json", "Normans", None), ("train.json", "Southern_California", None)],
    "val.json": [("val.json", "Harvard_University", 15)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared/data/squad2")
    parser.add_argument("--out", default="data/squad2-sample")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for target, parts in SAMPLE.items():
        articles = []
        for source, title, paragraphs in parts:
            data = json.loads((Path(args.shared) / source).read_text())["data"]
            article = next(a for a in data if a["title"] == title)
            articles.append({"title": title, "paragraphs": article["paragraphs"][:paragraphs]})
        (out / target).write_text(json.dumps({"version": "v2.0", "data": articles}, ensure_ascii=False))
        questions = sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
        unanswerable = sum(q["is_impossible"] for a in articles for p in a["paragraphs"] for q in p["qas"])
        print(f"{out / target}: {len(articles)} articles, {questions} questions, {unanswerable} unanswerable")


if __name__ == "__main__":
    main()
