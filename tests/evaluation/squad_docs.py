"""Hand-built, real and derived SQuAD documents and prediction sets for the scoring tests (plain JSON
structures, as the official scripts read them)."""

from __future__ import annotations

import copy
import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import SQUAD_V1_EXTRACT, SQUAD_V2_EXTRACT
from tests.evaluation.official_evaluate_v20 import normalize_answer  # the reference's, not ours


@dataclass(frozen=True)
class RealDev:
    """One real dev set as a test reads it, with facts counted once from the released file (so a test
    on the wrong or a truncated file fails instead of comparing two scorers on nothing)."""

    path: Path  # what a user passes to `python -m lit_rcqa.evaluate` (the full v1.1 dev set is .gz)
    questions: int
    unanswerable: int
    dot_questions: int  # questions with a gold that normalises to nothing ("."), each in a paragraph of its own

    def read(self) -> dict:
        opener = gzip.open if self.path.suffix == ".gz" else open
        with opener(self.path, "rt", encoding="utf-8") as fh:
            return json.load(fh)


# The committed extracts (every clone) and the full files (../shared/data; the caller skips without them).
V1_EXTRACT = RealDev(SQUAD_V1_EXTRACT, questions=293, unanswerable=0, dot_questions=2)
V2_EXTRACT = RealDev(SQUAD_V2_EXTRACT, questions=208, unanswerable=112, dot_questions=0)


def full_v1(shared_data: Path) -> RealDev:
    return RealDev(shared_data / "dev-v1.1.json.gz", questions=10570, unanswerable=0, dot_questions=3)


def full_v2(shared_data: Path) -> RealDev:
    return RealDev(shared_data / "dev-v2.0-subset-6articles.json", questions=1905, unanswerable=910,
                   dot_questions=0)


def real_devs(source: str, request) -> tuple[RealDev, RealDev]:
    """(v1.1 dev, v2.0 dev) for `source`: "extract", or "full" (asks for the `shared_data` fixture,
    which skips the test where the full files are absent, or fails it where data is required)."""
    if source == "extract":
        return V1_EXTRACT, V2_EXTRACT
    if source == "full":
        shared = request.getfixturevalue("shared_data")
        return full_v1(shared), full_v2(shared)
    raise ValueError(f"unknown real-data source {source!r}")


def make_doc(spec, version="2.0"):
    """A SQuAD document from [(id, [gold texts])]: one paragraph per question whose context holds every
    gold, so the file is valid for our loader as well (v2: no golds means is_impossible)."""
    paragraphs = []
    for qid, golds in spec:
        context = " | ".join(golds) + " | filler text"
        answers, at = [], 0
        for gold in golds:
            answers.append({"text": gold, "answer_start": at})
            at += len(gold) + 3
        qa = {"id": qid, "question": f"question {qid}?", "answers": answers}
        if version.startswith("2"):
            qa["is_impossible"] = not golds
        paragraphs.append({"context": context, "qas": [qa]})
    return {"version": version, "data": [{"title": "T", "paragraphs": paragraphs}]}


def questions(doc):
    return [qa for article in doc["data"] for par in article["paragraphs"] for qa in par["qas"]]


def gold_lists(doc):
    return [[a["text"] for a in qa["answers"]] for qa in questions(doc)]


def prediction_sets(doc, seed=0):
    """{name: {id: prediction}}: the gold answers, perturbed ones, empty ones and random spans."""
    rng = random.Random(seed)
    qas = [(qa, par["context"]) for article in doc["data"] for par in article["paragraphs"] for qa in par["qas"]]

    def perturb(text):
        words = text.split()
        r = rng.random()
        if not words or r < 0.2:
            return text.upper() + "."
        if r < 0.5:
            return " ".join(words[:-1])  # drop the last word
        if r < 0.8:
            return "the " + text + " " + rng.choice(["area", "of it", "!"])
        return rng.choice(["", "a an the", ".", text[::-1]])

    def random_span(context):
        words = context.split()
        i = rng.randrange(len(words))
        return " ".join(words[i:i + rng.randint(1, 6)])

    gold = {qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else "") for qa, _ in qas}
    return {
        "gold": gold,
        "perturbed": {qid: perturb(g) for qid, g in gold.items()},
        "empty": dict.fromkeys(gold, ""),
        "random": {qa["id"]: random_span(context) for qa, context in qas},
    }


def held_out_style_v2(dev_v2_doc, dev_v1_doc, *, dot_questions, seed=3):
    """A v2 set with golds that normalise to nothing, as held-out sets have: the v2 set, plus the real
    v1.1 dev paragraphs whose golds include "." (`dot_questions` of them, one such question each: 3 in
    the full dev set, 2 in the extract), plus a "." gold (a real "." of the context) added to every
    fifth answerable question (and made the only gold of every fifteenth)."""
    rng = random.Random(seed)
    doc = copy.deepcopy(dev_v2_doc)
    dotted = []
    for article in dev_v1_doc["data"]:
        for par in article["paragraphs"]:
            if any(not normalize_answer(a["text"]) for qa in par["qas"] for a in qa["answers"]):
                dotted.append(copy.deepcopy(par))
    assert len(dotted) == dot_questions
    doc["data"].append({"title": "v1.1 dev paragraphs with '.' golds", "paragraphs": dotted})
    answerable = [(qa, par["context"]) for article in doc["data"][:-1] for par in article["paragraphs"]
                  for qa in par["qas"] if qa["answers"]]
    for i, (qa, context) in enumerate(answerable):
        if i % 5 == 0 and "." in context:
            dots = [j for j, ch in enumerate(context) if ch == "."]
            dot = {"text": ".", "answer_start": rng.choice(dots)}
            qa["answers"] = [dot] if i % 15 == 0 else qa["answers"] + [dot]
    return doc
