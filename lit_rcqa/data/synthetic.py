"""A built-in synthetic diagnostic QA set (SQuAD v1.1 form), generated in code from a seed.

Each passage is 4-7 short sentences about invented people, places and organisations, one sentence
per relation (founded, moved, paid, published, ...). A question repeats the relation words of its
supporting sentence and asks for one of its slots, while the passage holds other values of the
same type (other names, years, numbers) in sentences with other relations: type-matching alone
cannot answer, reading the evidence sentence can. Every question records that sentence's index and
character span, so interpretation methods can be checked against the known evidence.

    from lit_rcqa.data.synthetic import make_synthetic_splits
    train, dev = make_synthetic_splits(2000, 500, seed=0)
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from string import Formatter

from lit_rcqa.data.example import Answer, QAExample
from lit_rcqa.errors import UserError

# --- 1. Word lists: names are built from syllables so they are novel to a pretrained model -----
FIRST = ("Al", "Bri", "Cas", "Dor", "El", "Fen", "Gal", "Hes", "Is", "Jor", "Kal", "Lor", "Mir", "Nel",
         "Or", "Per", "Quin", "Ros", "Sel", "Tam", "Ul", "Ves", "Wen", "Yor", "Zan")
FIRST_END = ("a", "ric", "wen", "mo", "dra", "lin", "ven", "ia", "ot", "is", "el", "ara")
SURNAME = ("Ash", "Brem", "Cor", "Dal", "Esk", "Fal", "Grim", "Hol", "Ith", "Kel", "Lorn", "Mer", "Nash",
           "Ost", "Pell", "Quen", "Rav", "Sten", "Thal", "Vor", "Wex", "Yar")
SURNAME_END = ("wick", "dane", "more", "ley", "ford", "ter", "ton", "by", "sley", "ard", "holt", "ing")
PLACE = ("Bel", "Cas", "Dun", "Ever", "Far", "Glen", "Har", "Kin", "Lis", "Mar", "Nor", "Pen", "Ros", "Sal",
         "Tor", "Val", "Wil", "Yel", "Bram", "Oster")
PLACE_END = ("haven", "mouth", "stead", "vale", "gate", "port", "moor", "field", "crest", "bury", "holm")
ORG = ("Amber", "Crescent", "Falcon", "Granite", "Harbour", "Ivory", "Juniper", "Lantern", "Meridian",
       "Northwind", "Oakleaf", "Pinnacle", "Riverside", "Silverline", "Thistle", "Upland", "Willow")
ORG_KIND = ("Weaving Guild", "Shipping Company", "Academy of Music", "Society of Engineers", "Mining Company",
            "Botanical Society", "Printing House", "Trade Council", "Rowing Club", "Observatory", "Glassworks")
GOODS = (("copper", "woollen", "glass", "oak", "silver", "linen", "clay", "iron", "brass", "felt"),
         ("lamps", "blankets", "beads", "barrels", "bowls", "compasses", "clocks", "chairs", "bells", "kettles"))
CROPS = ("barley", "rye", "flax", "turnips", "hops", "oats", "apples", "plums", "millet", "hemp", "pears")
BOOK = (("Quiet", "Salt", "Hollow", "Crimson", "Winter", "Distant", "Broken", "Golden", "Silent", "Last"),
        ("Harbour", "Road", "Lantern", "Orchard", "Tide", "Garden", "Mirror", "Bridge", "Letter", "Valley"))
PRIZE_KIND = ("Medal", "Prize", "Award", "Cup")
SHIP = (("Silver", "Morning", "Swift", "Northern", "Grey", "Scarlet", "Patient", "Bold"),
        ("Heron", "Lark", "Otter", "Comet", "Gull", "Fox", "Star", "Wren"))
SUBJECTS = ("astronomy", "botany", "geometry", "navigation", "rhetoric", "chemistry", "music", "law", "surveying")
PROFESSIONS = ("baker", "surveyor", "glassblower", "clockmaker", "physician", "cartographer", "brewer", "potter")
ANIMALS = ("goats", "sheep", "horses", "mules", "hens", "oxen", "geese")
WORKERS = ("workers", "clerks", "weavers", "miners", "apprentices", "porters")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
CURRENCIES = ("crowns", "florins", "marks", "shillings")
UNITS = ("tonnes", "barrels", "sacks", "kilograms")

# Slot kind -> answer type. Values of one type are each other's distractors; kinds missing here
# (profession, animals, workers) are filler and never asked about.
ANSWER_TYPE = {"person": "person", "place": "place", "org": "organisation", "year": "date", "date": "date",
               "count": "number", "money": "amount", "quantity": "amount", "goods": "thing", "crop": "thing",
               "book": "thing", "prize": "thing", "ship": "thing", "subject": "thing"}
QUESTION_TYPES = ("who", "what", "when", "where", "which", "how many", "how much")


# --- 2. Relation templates: one sentence pattern, and question phrasings per answer slot ------
@dataclass(frozen=True)
class Template:
    relation: str
    sentence: str                              # str.format pattern over the slot names
    slots: dict[str, str]                      # slot name -> kind ("p" is a main character of the passage)
    questions: dict[str, tuple[str, ...]]      # answer slot -> phrasings, patterns over the other slots


TEMPLATES = (
    Template("found", "In {year}, {p} founded the {org} in {place} with {count} members and a loan of {money}.",
             dict(year="year", p="person", org="org", place="place", count="count", money="money"),
             dict(p=("Who founded the {org}?", "Which person founded the {org} in {place}?"),
                  year=("When did {p} found the {org}?", "In what year was the {org} founded?"),
                  place=("Where did {p} found the {org}?", "In which town was the {org} founded?"),
                  count=("How many members did the {org} have when it was founded?",
                         "With how many members did {p} found the {org}?"),
                  money=("How much was the loan that {p} used to found the {org}?",),
                  org=("What did {p} found in {year}?", "Which organisation did {p} found in {place}?"))),
    Template("move", "In {date}, {p} moved to {place} with {count} {animals} and a cart full of {goods}.",
             dict(date="date", p="person", place="place", count="count", animals="animals", goods="goods"),
             dict(place=("Where did {p} move to in {date}?", "Which town did {p} move to with {count} {animals}?"),
                  date=("When did {p} move to {place}?",),
                  count=("How many {animals} did {p} take when moving to {place}?",
                         "How many {animals} came with {p} when moving to {place}?"),
                  p=("Who moved to {place} in {date}?",),
                  goods=("What was the cart full of when {p} moved to {place}?",))),
    Template("pay", "At the market in {place}, {p} paid {money} for {goods} made by {q}, a {profession}.",
             dict(place="place", p="person", money="money", goods="goods", q="person", profession="profession"),
             dict(money=("How much did {p} pay for {goods}?", "How much money did {p} pay at the market in {place}?"),
                  goods=("What did {p} pay {money} for?", "What did {p} buy at the market in {place}?"),
                  place=("Where did {p} pay {money} for {goods}?",),
                  p=("Who paid {money} for {goods}?",),
                  q=("Who made the {goods} that {p} paid for?",
                     "Which {profession} made the {goods} that {p} paid for?"))),
    Template("employ", "By {year}, the {org} in {place} employed {count} {workers} and paid them {money} each season.",
             dict(year="year", org="org", place="place", count="count", workers="workers", money="money"),
             dict(count=("How many {workers} did the {org} employ by {year}?",),
                  org=("Which organisation in {place} employed {count} {workers}?",),
                  year=("By what year did the {org} employ {count} {workers}?",
                        "By which year had the {org} employed {count} {workers}?"),
                  place=("Where was the {org} that employed {count} {workers}?",),
                  money=("How much did the {org} pay its {workers} each season?",))),
    Template("marry", "In {year}, {p} married {q}, a {profession} from {place}, in front of {count} guests.",
             dict(year="year", p="person", q="person", profession="profession", place="place", count="count"),
             dict(q=("Whom did {p} marry in {year}?", "Who did {p} marry in front of {count} guests?"),
                  p=("Who married {q} in {year}?",),
                  year=("When did {p} marry {q}?", "In which year did {p} marry {q}?"),
                  place=("Where was {q}, the {profession} whom {p} married, from?",),
                  count=("How many guests watched {p} marry {q}?",
                         "In front of how many guests did {p} marry {q}?"))),
    Template("produce", "In {year}, the farms around {place} produced {quantity} of {crop}, which sold for {money}.",
             dict(year="year", place="place", quantity="quantity", crop="crop", money="money"),
             dict(quantity=("How much {crop} did the farms around {place} produce in {year}?",),
                  crop=("What did the farms around {place} produce in {year}?",
                        "Which crop did the farms around {place} produce {quantity} of?"),
                  money=("How much did the {crop} from the farms around {place} sell for?",),
                  place=("Where did the farms produce {quantity} of {crop}?",
                         "Around which town did the farms produce {quantity} of {crop}?"),
                  year=("When did the farms around {place} produce {quantity} of {crop}?",))),
    Template("publish",
             "{p} published a book titled {book} in {year}, and {count} copies were sold in its first month.",
             dict(p="person", book="book", year="year", count="count"),
             dict(book=("What book did {p} publish in {year}?", "Which book did {p} publish?"),
                  count=("How many copies of {book} were sold in its first month?",
                         "How many copies of the book {p} published were sold in its first month?"),
                  year=("When did {p} publish {book}?", "In which year was {book} published?"),
                  p=("Who published a book titled {book}?", "Who published {book} in {year}?"))),
    Template("prize", "In {year}, {p} won the {prize}, which the {org} awarded together with {money}.",
             dict(year="year", p="person", prize="prize", org="org", money="money"),
             dict(prize=("Which prize did {p} win in {year}?", "What prize did the {org} award to {p}?"),
                  p=("Who won the {prize}?", "Who won the prize awarded by the {org} in {year}?"),
                  org=("Which organisation awarded the {prize}?",),
                  money=("How much money did the {org} award together with the {prize}?",),
                  year=("When did {p} win the {prize}?",))),
    Template("donate", "{p} donated {money} to the {org} so that a library could be built in {place} in {year}.",
             dict(p="person", money="money", org="org", place="place", year="year"),
             dict(money=("How much did {p} donate to the {org}?",),
                  org=("Which organisation did {p} donate {money} to?",
                       "To which organisation did {p} donate {money}?"),
                  place=("Where was a library built with the money {p} donated?",),
                  p=("Who donated {money} to the {org}?",),
                  year=("When was a library built with the money {p} donated?",))),
    Template("teach", "From {year}, {p} taught {subject} to {count} students at the {org} in {place}.",
             dict(year="year", p="person", subject="subject", count="count", org="org", place="place"),
             dict(count=("How many students did {p} teach at the {org}?",
                         "To how many students did {p} teach {subject}?"),
                  subject=("What did {p} teach at the {org}?", "Which subject did {p} teach to {count} students?"),
                  org=("Which organisation did {p} teach {subject} at?",),
                  year=("From what year did {p} teach {subject}?", "Since when did {p} teach {subject} at the {org}?"),
                  p=("Who taught {subject} to {count} students?",))),
    Template("sail", "In {date}, {p} sailed {count} kilometres from {place} to {place2} aboard the {ship}.",
             dict(date="date", p="person", count="count", place="place", place2="place", ship="ship"),
             dict(count=("How many kilometres did {p} sail from {place} to {place2}?",),
                  place2=("Where did {p} sail to aboard the {ship}?", "To which port did {p} sail from {place}?"),
                  place=("From where did {p} sail to {place2}?", "Which port did {p} sail from aboard the {ship}?"),
                  ship=("What ship did {p} sail aboard?", "Aboard which ship did {p} sail to {place2}?"),
                  p=("Who sailed from {place} to {place2}?",),
                  date=("When did {p} sail aboard the {ship}?",))),
    Template("lend", "In {year}, the {org} lent {p} {money} to open a workshop in {place} that made {goods}.",
             dict(year="year", org="org", p="person", money="money", place="place", goods="goods"),
             dict(money=("How much did the {org} lend {p}?", "How much money did the {org} lend to {p}?"),
                  org=("Which organisation lent {p} {money}?",),
                  goods=("What did the workshop that {p} opened in {place} make?",),
                  place=("Where did {p} open a workshop?",
                         "In which town did {p} open a workshop with money from the {org}?"),
                  p=("Who did the {org} lend {money} to?",),
                  year=("When did the {org} lend {p} {money}?",))),
)


@dataclass(frozen=True)
class SyntheticQuestion:
    """A generated example with what the generator knows about it (for tests and analyses)."""

    example: QAExample
    qtype: str                     # one of QUESTION_TYPES
    answer_type: str               # a value of ANSWER_TYPE
    relation: str                  # the template of the evidence sentence
    distractors: tuple[str, ...]   # other values of the answer's type in the same passage


def question_type(question: str) -> str | None:
    """The question's type: its first wh-word ("whom" counts as "who"), or None if it has none."""
    match = re.search(r"\b(how many|how much|whom|who|what|when|where|which)\b", question.lower())
    return None if match is None else ("who" if match.group(1) == "whom" else match.group(1))


# --- 3. Filling a passage -----------------------------------------------------------------
class _Values:
    """Draws slot values that are unique within one passage (no shared names, words or numbers)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def draw(self, kind: str) -> str:
        for _ in range(1000):
            value, keys = self._candidate(kind)
            if not keys & self.used:
                self.used |= keys
                return value
        raise RuntimeError(f"ran out of distinct {kind} values")  # word lists are far larger than a passage

    def _candidate(self, kind: str) -> tuple[str, set[str]]:
        """A value and the keys (words, numbers) it must not share with earlier values."""
        r = self.rng
        if kind == "person":
            first, last = r.choice(FIRST) + r.choice(FIRST_END), r.choice(SURNAME) + r.choice(SURNAME_END)
            return f"{first} {last}", {first, last}
        if kind == "place":
            name = r.choice(PLACE) + r.choice(PLACE_END)
            return name, {name}
        if kind == "org":
            root, kind_name = r.choice(ORG), r.choice(ORG_KIND)
            return f"{root} {kind_name}", {root, kind_name}
        if kind in ("year", "date"):
            year = str(r.randint(1720, 1990))
            return (year if kind == "year" else f"{r.choice(MONTHS)} {year}"), {year}
        if kind == "count":
            n = r.randint(3, 950)
            return str(n), {str(n)}
        if kind in ("money", "quantity"):
            n = r.randrange(20, 990) * 10 if kind == "money" else r.randint(12, 990)
            unit = r.choice(CURRENCIES if kind == "money" else UNITS)
            return f"{n:,} {unit}", {str(n)}
        if kind == "prize":
            name = r.choice(SURNAME) + r.choice(SURNAME_END)
            return f"{name} {r.choice(PRIZE_KIND)}", {name}
        pairs = {"goods": GOODS, "book": BOOK, "ship": SHIP}
        if kind in pairs:
            first, second = (r.choice(words) for words in pairs[kind])
            value = f"The {first} {second}" if kind == "book" else f"{first} {second}"
            return value, {first, second}
        words = {"crop": CROPS, "subject": SUBJECTS, "profession": PROFESSIONS, "animals": ANIMALS,
                 "workers": WORKERS}[kind]
        value = r.choice(words)
        return value, {value}


@dataclass(frozen=True)
class _Sentence:
    template: Template
    values: dict[str, str]
    spans: dict[str, tuple[int, int]]   # slot -> [start, end) in the passage
    span: tuple[int, int]               # the sentence's own [start, end) in the passage


def _render(pattern: str, values: dict[str, str], offset: int) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill `pattern`, returning the text and each slot's [start, end) shifted by `offset`."""
    parts, spans, pos = [], {}, offset
    for literal, slot, _, _ in Formatter().parse(pattern):
        parts.append(literal)
        pos += len(literal)
        if slot is not None:
            spans.setdefault(slot, (pos, pos + len(values[slot])))
            parts.append(values[slot])
            pos += len(values[slot])
    text = "".join(parts)
    return text[0].upper() + text[1:], spans


def _passage(rng: random.Random, num_sentences: int) -> tuple[str, list[_Sentence], list[str]]:
    """(context, sentences, main characters) for a passage of `num_sentences` distinct relations."""
    values = _Values(rng)
    cast = [values.draw("person") for _ in range(3)]  # rotating main characters: "who" is never trivial
    sentences, texts, offset = [], [], 0
    for i, template in enumerate(rng.sample(TEMPLATES, num_sentences)):
        filled = {slot: cast[i % len(cast)] if slot == "p" else values.draw(kind)
                  for slot, kind in template.slots.items()}
        text, spans = _render(template.sentence, filled, offset)
        sentences.append(_Sentence(template, filled, spans, (offset, offset + len(text))))
        texts.append(text)
        offset += len(text) + 1  # the joining space
    return " ".join(texts), sentences, cast


# --- 4. Choosing questions ----------------------------------------------------------------
def _candidates(sentences: list[_Sentence], num_distractors: int) -> list[tuple]:
    """Every (sentence index, slot, question, qtype, answer type, distractors) the passage supports."""
    by_type: dict[str, set[str]] = {}
    for sentence in sentences:
        for slot, kind in sentence.template.slots.items():
            if kind in ANSWER_TYPE:
                by_type.setdefault(ANSWER_TYPE[kind], set()).add(sentence.values[slot])
    out = []
    for index, sentence in enumerate(sentences):
        for slot, phrasings in sentence.template.questions.items():
            answer = sentence.values[slot]
            answer_type = ANSWER_TYPE[sentence.template.slots[slot]]
            distractors = tuple(sorted(by_type[answer_type] - {answer}))
            if len(distractors) < num_distractors:
                continue
            for phrasing in phrasings:
                question = phrasing.format(**sentence.values)
                if _mentions(question, answer):
                    continue  # never give the answer away
                out.append((index, slot, question, question_type(question), answer_type, distractors))
    return out


def _mentions(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` as whole words, ignoring case (substring test first: it is cheap)."""
    text, phrase = text.lower(), phrase.lower()
    return phrase in text and re.search(r"\b" + re.escape(phrase) + r"\b", text) is not None


def _choose(rng: random.Random, candidates: list[tuple], k: int) -> list[tuple]:
    """Up to `k` candidates about different slots, drawing the question type uniformly first."""
    chosen, asked = [], set()
    for _ in range(k):
        left = [c for c in candidates if (c[0], c[1]) not in asked]
        if not left:
            break
        qtype = rng.choice(sorted({c[3] for c in left}))
        pick = rng.choice([c for c in left if c[3] == qtype])
        chosen.append(pick)
        asked.add((pick[0], pick[1]))
    return chosen


# --- 5. Public API ------------------------------------------------------------------------
def make_synthetic_questions(num_examples: int, *, seed: int = 0, num_distractors: int = 2,
                             sentences_per_passage: tuple[int, int] = (4, 7), questions_per_passage: int = 2,
                             id_prefix: str = "syn") -> list[SyntheticQuestion]:
    """`num_examples` questions with their metadata; the same arguments give the same questions."""
    low, high = sentences_per_passage
    if not 1 <= low <= high <= len(TEMPLATES):
        raise UserError(f"sentences_per_passage must be (low, high) with 1 <= low <= high <= {len(TEMPLATES)}; "
                        f"got {sentences_per_passage}")
    if num_examples < 0 or num_distractors < 0 or questions_per_passage < 1:
        raise UserError("num_examples and num_distractors must be >= 0 and questions_per_passage >= 1")
    rng = random.Random(f"{id_prefix}:{seed}")  # str seeds are hashed stably, unlike hash() of a tuple
    out: list[SyntheticQuestion] = []
    misses = 0
    while len(out) < num_examples:
        context, sentences, cast = _passage(rng, rng.randint(low, high))
        picks = _choose(rng, _candidates(sentences, num_distractors), min(questions_per_passage,
                                                                          num_examples - len(out)))
        misses = 0 if picks else misses + 1
        if misses > 100:
            raise UserError(f"num_distractors={num_distractors} is more than passages of {low}-{high} sentences "
                            "can hold; lower it or use longer passages")
        for index, slot, question, qtype, answer_type, distractors in picks:
            sentence = sentences[index]
            start, end = sentence.spans[slot]
            example = QAExample(id=f"{id_prefix}-{len(out):06d}", title=cast[0], context=context, question=question,
                                answers=(Answer(context[start:end], start),), evidence_sentence=index,
                                evidence_span=sentence.span)
            out.append(SyntheticQuestion(example, qtype, answer_type, sentence.template.relation, distractors))
    return out


def make_synthetic(num_examples: int, *, seed: int = 0, num_distractors: int = 2,
                   sentences_per_passage: tuple[int, int] = (4, 7), questions_per_passage: int = 2,
                   id_prefix: str = "syn") -> list[QAExample]:
    """The synthetic diagnostic set as plain examples, ids "syn-000000", "syn-000001", ..."""
    return [q.example for q in make_synthetic_questions(
        num_examples, seed=seed, num_distractors=num_distractors, sentences_per_passage=sentences_per_passage,
        questions_per_passage=questions_per_passage, id_prefix=id_prefix)]


def make_synthetic_splits(train_size: int, dev_size: int, *, seed: int = 0,
                          **options) -> tuple[list[QAExample], list[QAExample]]:
    """Disjoint train and dev sets: separate random streams, ids "syn-train-..." and "syn-dev-..."."""
    train = make_synthetic(train_size, seed=seed, id_prefix="syn-train", **options)
    dev = make_synthetic(dev_size, seed=seed, id_prefix="syn-dev", **options)
    return train, dev
