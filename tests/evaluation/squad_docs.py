"""Hand-built and derived SQuAD documents and prediction sets for the scoring tests (plain JSON
structures, as the official scripts read them)."""

from __future__ import annotations

import copy
import random

from tests.evaluation.official_evaluate_v20 import normalize_answer  # the reference's, not ours


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


def held_out_style_v2(dev_v2_doc, dev_v1_doc, seed=3):
    """A v2 set with golds that normalise to nothing, as held-out sets have: the v2 subset, plus the
    three real v1.1 dev paragraphs whose golds include ".", plus a "." gold (a real "." of the context)
    added to every fifth answerable question (and made the only gold of every fifteenth)."""
    rng = random.Random(seed)
    doc = copy.deepcopy(dev_v2_doc)
    dotted = []
    for article in dev_v1_doc["data"]:
        for par in article["paragraphs"]:
            if any(not normalize_answer(a["text"]) for qa in par["qas"] for a in qa["answers"]):
                dotted.append(copy.deepcopy(par))
    assert len(dotted) == 3
    doc["data"].append({"title": "v1.1 dev paragraphs with '.' golds", "paragraphs": dotted})
    answerable = [(qa, par["context"]) for article in doc["data"][:-1] for par in article["paragraphs"]
                  for qa in par["qas"] if qa["answers"]]
    for i, (qa, context) in enumerate(answerable):
        if i % 5 == 0 and "." in context:
            dots = [j for j, ch in enumerate(context) if ch == "."]
            dot = {"text": ".", "answer_start": rng.choice(dots)}
            qa["answers"] = [dot] if i % 15 == 0 else qa["answers"] + [dot]
    return doc
