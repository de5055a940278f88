"""Seeded synthetic corpus for the bundled demo model, and the task data the tests reuse.

The corpus mixes one-sentence examples of the behaviours the Workbench pages study:
indirect-object identification (IOI) in templates composed from parts, subject-verb agreement
after many openers and through up to two stacked attractor phrases, fact recall, induction on
repeated word spans, a planted he/she-occupation association, and plain filler text
(`interp.demo_model.packing` adds repeated random-token sequences over the whole vocabulary).
Every task also exposes held-out prompts that `generate_corpus` never emits: name pairs, IOI
compositions, agreement combinations and openers, fact phrasings, random sequences.

Splits are decided by a stable hash of each prompt's defining parts (`is_held_out`), so a prompt
is held out or not independently of the random seed and of the order things are generated in.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

Split = Literal["train", "test"]

# ---------------------------------------------------------------------------------------------
# Held-out bookkeeping
# ---------------------------------------------------------------------------------------------


def is_held_out(key: str, fraction: float) -> bool:
    """True when `key` falls in the held-out `fraction`, decided by a stable hash of the key."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


# ---------------------------------------------------------------------------------------------
# Indirect-object identification
# ---------------------------------------------------------------------------------------------

NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Tom", "James", "Sarah", "Emma", "David", "Michael",
    "Anna", "Laura", "Paul", "Peter", "Kate", "Lucy", "Jack", "Daniel", "Rachel", "Chris",
    "Sam", "Ben", "Jane", "Amy", "Eric", "Mark", "Lisa", "Susan", "Kevin", "Jason",
    "Linda", "Emily", "George", "Helen", "Frank", "Grace", "Henry", "Julia", "Adam", "Rose",
    "Oliver", "Sophie", "Victor", "Nina", "Max", "Clara", "Leo", "Ruth", "Oscar", "Diana",
)  # fmt: skip

# An IOI template is composed from four parts: an opener, a first clause naming {A} and {B},
# a connective, and a second clause where the repeated subject {S} gives something to the
# indirect object (the prompt ends just before it; the answer is " {IO}").
IOI_OPENERS: tuple[str, ...] = (
    "", "Then, ", "Later, ", "One day, ", "Yesterday, ", "That evening, ", "In the morning, ",
)  # fmt: skip
# First clauses start in lower case; `_cap` raises the first letter when the opener is empty.
IOI_FIRST_CLAUSES: tuple[str, ...] = (
    "when {A} and {B} went to the {place}",
    "after {A} and {B} went to the {place}",
    "while {A} and {B} were working at the {place}",
    "{A} and {B} had a long day at the {place}",
    "friends {A} and {B} found a {obj} at the {place}",
    "{A} and {B} went to the {place}",
    "as soon as {A} and {B} arrived at the {place}",
    "before {A} and {B} left the {place}",
)
IOI_CONNECTIVES: tuple[str, ...] = (", ", ". ", ", and then ")
IOI_SECOND_CLAUSES: tuple[str, ...] = (
    "{S} gave a {obj} to",
    "{S} handed a {obj} to",
    "{S} passed a {obj} to",
    "{S} threw it to",
    "{S} sent a {obj} to",
    "{S} showed a {obj} to",
    "{S} brought a {obj} to",
)

# The five templates of the first demo model, as (opener, first clause, connective, second
# clause) indices: always in training, so pages and earlier experiments keep their prompts.
IOI_V1_COMPOSITIONS: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 0, 0),
    (0, 1, 0, 1),
    (1, 3, 1, 0),
    (0, 2, 0, 2),
    (0, 4, 1, 3),
)

IOI_PLACES: tuple[str, ...] = (
    "store", "park", "school", "office", "garden", "market", "station", "beach", "library",
    "restaurant", "museum", "river", "house", "farm",
)  # fmt: skip

IOI_OBJECTS: tuple[str, ...] = (
    "drink", "book", "ball", "letter", "gift", "bag", "cake", "ring", "pen", "map", "hat", "coin",
)  # fmt: skip

IOI_HELDOUT_PAIR_FRACTION = 0.12
IOI_HELDOUT_COMPOSITION_FRACTION = 0.2


def _compose_ioi(parts: tuple[int, int, int, int]) -> str:
    opener, first, connective, second = parts
    text = IOI_OPENERS[opener] + IOI_FIRST_CLAUSES[first]
    text = _cap(text) if not IOI_OPENERS[opener] else text
    return text + IOI_CONNECTIVES[connective] + IOI_SECOND_CLAUSES[second]


def _all_ioi_compositions() -> list[tuple[int, int, int, int]]:
    rest = [
        (o, f, c, s)
        for o in range(len(IOI_OPENERS))
        for f in range(len(IOI_FIRST_CLAUSES))
        for c in range(len(IOI_CONNECTIVES))
        for s in range(len(IOI_SECOND_CLAUSES))
        if (o, f, c, s) not in IOI_V1_COMPOSITIONS
    ]
    return list(IOI_V1_COMPOSITIONS) + rest


IOI_COMPOSITIONS: tuple[tuple[int, int, int, int], ...] = tuple(_all_ioi_compositions())
# Every composed template, in the order of IOI_COMPOSITIONS; `IOIPrompt.template` indexes it.
IOI_COMPOSED_TEMPLATES: tuple[str, ...] = tuple(_compose_ioi(p) for p in IOI_COMPOSITIONS)
# The first demo model's five templates (the first five composed ones): the patching page
# offers these, so its template list stays short and its default prompt unchanged.
IOI_TEMPLATES: tuple[str, ...] = IOI_COMPOSED_TEMPLATES[: len(IOI_V1_COMPOSITIONS)]


def ioi_composition_is_held_out(index: int) -> bool:
    """True when template `index` of IOI_COMPOSED_TEMPLATES is a held-out composition (never trained)."""
    if IOI_COMPOSITIONS[index] in IOI_V1_COMPOSITIONS:
        return False
    return is_held_out(f"ioi-composition|{IOI_COMPOSITIONS[index]}", IOI_HELDOUT_COMPOSITION_FRACTION)


def ioi_template_indices(split: Split) -> list[int]:
    """Indices into IOI_COMPOSED_TEMPLATES of the training or the held-out compositions. Every
    part (opener, clause, connective) occurs in some training composition."""
    _check_split(split)
    want = split == "test"
    return [i for i in range(len(IOI_COMPOSED_TEMPLATES)) if ioi_composition_is_held_out(i) == want]


def ioi_name_pairs(split: Split) -> list[tuple[str, str]]:
    """Unordered name pairs (sorted by name order in NAMES) of a split.

    About 12% of the 1225 pairs are held out: no training sentence contains both names of a
    held-out pair, while every name on its own is seen in training with other partners.
    """
    _check_split(split)
    pairs = list(combinations(NAMES, 2))
    want = split == "test"
    return [
        p for p in pairs if is_held_out(f"ioi|{p[0]}|{p[1]}", IOI_HELDOUT_PAIR_FRACTION) == want
    ]


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI prompt. `order` is "ABBA" when the indirect object is named first, else "BABA";
    `template` indexes IOI_COMPOSED_TEMPLATES."""

    text: str
    io: str
    s: str
    order: Literal["ABBA", "BABA"]
    template: int


def make_ioi_prompt(template: int, io: str, s: str, order: str, place: str, obj: str) -> IOIPrompt:
    """Fill IOI template number `template` with indirect object `io` and subject `s`."""
    if order not in ("ABBA", "BABA"):
        raise ValueError(f"order must be 'ABBA' or 'BABA', got {order!r}")
    a, b = (io, s) if order == "ABBA" else (s, io)
    text = IOI_COMPOSED_TEMPLATES[template].format(A=a, B=b, S=s, place=place, obj=obj)
    return IOIPrompt(text=text, io=io, s=s, order=order, template=template)  # type: ignore[arg-type]


def ioi_prompts(
    split: Split, n: int, seed: int = 0, templates: Split | None = None
) -> list[IOIPrompt]:
    """`n` IOI prompts with the name pairs of `split`, half ABBA and half BABA.

    `templates` picks the compositions ("train" or "test"; default: the v1 templates, cycled
    evenly, as the first demo model was measured). `ioi_prompts("test", n, templates="test")`
    is the strictest split: held-out names in held-out compositions.
    """
    rng = random.Random(f"ioi-prompts|{split}|{templates}|{seed}")
    pairs = ioi_name_pairs(split)
    pool = list(range(len(IOI_V1_COMPOSITIONS))) if templates is None else ioi_template_indices(templates)
    prompts = []
    for i in range(n):
        pair = list(rng.choice(pairs))
        rng.shuffle(pair)
        io, s = pair
        order = "ABBA" if i % 2 == 0 else "BABA"
        template = pool[(i // 2) % len(pool)] if templates is None else rng.choice(pool)
        place, obj = rng.choice(IOI_PLACES), rng.choice(IOI_OBJECTS)
        prompts.append(make_ioi_prompt(template, io, s, order, place, obj))
    return prompts


# ---------------------------------------------------------------------------------------------
# Subject-verb agreement
# ---------------------------------------------------------------------------------------------

# (singular, plural) noun forms. None of them is an occupation, a name or an IOI object.
AGREEMENT_NOUNS: tuple[tuple[str, str], ...] = (
    ("key", "keys"), ("dog", "dogs"), ("cat", "cats"), ("car", "cars"), ("boy", "boys"),
    ("girl", "girls"), ("table", "tables"), ("tree", "trees"), ("bird", "birds"),
    ("window", "windows"), ("door", "doors"), ("chair", "chairs"), ("box", "boxes"),
    ("student", "students"), ("friend", "friends"), ("cabinet", "cabinets"),
    ("picture", "pictures"), ("lamp", "lamps"), ("horse", "horses"), ("child", "children"),
    ("man", "men"), ("woman", "women"), ("bottle", "bottles"), ("computer", "computers"),
)  # fmt: skip

# (singular verb, plural verb) and what may follow them.
VERB_PAIRS: tuple[tuple[str, str], ...] = (
    ("is", "are"),
    ("has", "have"),
    ("was", "were"),
    ("does", "do"),
)

VERB_CONTINUATIONS: dict[str, tuple[str, ...]] = {
    "is": ("on the floor.", "very old.", "in the room.", "broken.", "quite new."),
    "has": ("a red mark.", "a small crack.", "been here for years.", "a strange smell."),
    "was": ("here yesterday.", "very clean.", "found last week.", "in the shed."),
    "does": ("not look new.", "not belong here.", "not move.", "not matter much."),
}

AGREEMENT_PREPOSITIONS: tuple[str, ...] = (
    "to",
    "near",
    "by",
    "behind",
    "next to",
    "on",
    "with",
    "of",
)

# Training openers, composed: a speaker and a past-tense verb of saying ("They said that "),
# or an adverb. Past tense keeps the opener's own verb free of number. The subject's article
# is lower-cased after a non-empty opener.
_OPENER_SPEAKERS = ("I", "We", "They", "You", "She", "He", "Everyone", "Nobody")
_OPENER_VERBS = ("said", "knew", "thought", "heard", "noticed", "believed")
_OPENER_ADVERBS = (
    "Maybe ", "Perhaps ", "Sadly, ", "Of course, ", "Today, ", "At last, ", "Luckily, ",
    "Honestly, ", "Now ", "Still, ", "Suddenly, ", "Clearly, ",
)  # fmt: skip
AGREEMENT_OPENERS: tuple[str, ...] = (
    "",
    "I think ",
    "We know that ",
    *(f"{who} {verb} that " for who in _OPENER_SPEAKERS for verb in _OPENER_VERBS),
    *_OPENER_ADVERBS,
)
# Openers that occur elsewhere in the corpus (fact and IOI sentences) but never in an
# agreement sentence: the "unseen opener" split.
AGREEMENT_UNSEEN_OPENERS: tuple[str, ...] = (
    "In fact, ", "As everyone knows, ", "It is true that ", "My friend said that ", "I read that ",
    "Then, ", "Later, ", "One day, ", "Yesterday, ", "That evening, ", "In the morning, ",
)  # fmt: skip

AGREEMENT_HELDOUT_FRACTION = 0.15
# Share of training sentences with 0, 1 and 2 stacked attractor phrases.
AGREEMENT_ATTRACTOR_WEIGHTS: tuple[float, float, float] = (0.3, 0.4, 0.3)
AgreementOpeners = Literal["seen", "unseen"]


@dataclass(frozen=True)
class AgreementPrompt:
    """A prompt ending just before the verb; `correct` / `wrong` are verbs without leading space.

    `structure` is "simple" (no attractor), "pp" (one prepositional phrase between subject and
    verb) or "pp2" (two stacked phrases: "The key to the cabinets near the doors");
    `attractor_mismatch` is True when some attractor noun has the opposite number, and
    `n_mismatched` counts them.
    """

    text: str
    correct: str
    wrong: str
    subject_plural: bool
    structure: Literal["simple", "pp", "pp2"]
    attractor_mismatch: bool
    n_mismatched: int = 0
    opener: str = ""


def _agreement_key(
    opener: str, noun: int, plural: bool, attractors: tuple[tuple[int, bool], ...]
) -> str:
    if not attractors:
        # Simple sentences are held out by their whole prompt (opener, subject and number).
        return f"agr|simple|{opener}|{noun}|{plural}"
    # Attractor sentences are held out by (subject, attractor nouns and numbers) combination.
    return f"agr|pp|{noun}|{plural}|{attractors}"


def _sample_agreement(
    rng: random.Random,
    split: Split,
    openers: AgreementOpeners = "seen",
    n_attractors: int | None = None,
) -> tuple[AgreementPrompt, str]:
    """Draw one agreement prompt of `split` (rejection sampling on the hash split)."""
    want = split == "test"
    pool = AGREEMENT_OPENERS if openers == "seen" else AGREEMENT_UNSEEN_OPENERS
    while True:
        opener = rng.choice(pool)
        noun = rng.randrange(len(AGREEMENT_NOUNS))
        plural = rng.random() < 0.5
        verb = rng.randrange(len(VERB_PAIRS))
        k = n_attractors
        if k is None:
            k = rng.choices((0, 1, 2), AGREEMENT_ATTRACTOR_WEIGHTS)[0]
        preps = [rng.choice(AGREEMENT_PREPOSITIONS) for _ in range(k)]
        attractors: list[tuple[int, bool]] = []
        for _ in range(k):
            used = {noun, *(a for a, _ in attractors)}
            attr = rng.choice([i for i in range(len(AGREEMENT_NOUNS)) if i not in used])
            attractors.append((attr, (not plural) if rng.random() < 0.7 else plural))
        key = _agreement_key(opener if openers == "seen" else "", noun, plural, tuple(attractors))
        # Unseen openers are never trained, so their prompts need no hash split.
        if (openers == "seen" or split == "train") and is_held_out(key, AGREEMENT_HELDOUT_FRACTION) != want:
            continue
        subject = f"the {AGREEMENT_NOUNS[noun][int(plural)]}"
        for prep, (attr, attr_plural) in zip(preps, attractors, strict=True):
            subject += f" {prep} the {AGREEMENT_NOUNS[attr][int(attr_plural)]}"
        text = _cap(opener + subject) if opener == "" else opener + subject
        sing, plur = VERB_PAIRS[verb]
        correct, wrong = (plur, sing) if plural else (sing, plur)
        continuation = rng.choice(VERB_CONTINUATIONS[sing])
        n_mismatched = sum(ap != plural for _, ap in attractors)
        prompt = AgreementPrompt(
            text=text,
            correct=correct,
            wrong=wrong,
            subject_plural=plural,
            structure=("simple", "pp", "pp2")[k],
            attractor_mismatch=n_mismatched > 0,
            n_mismatched=n_mismatched,
            opener=opener,
        )
        return prompt, continuation


def agreement_prompts(
    split: Split,
    n: int,
    seed: int = 0,
    openers: AgreementOpeners = "seen",
    n_attractors: int | None = None,
) -> list[AgreementPrompt]:
    """`n` agreement prompts of a split: 0, 1 or 2 stacked attractor phrases (30/40/30%, or
    exactly `n_attractors`), each attractor of the opposite number with probability 0.7
    ("The key to the cabinets" -> " is"). `openers="unseen"` (test split only) opens every
    prompt with an opener from AGREEMENT_UNSEEN_OPENERS, never used in agreement training."""
    _check_split(split)
    if openers not in ("seen", "unseen"):
        raise ValueError(f"openers must be 'seen' or 'unseen', got {openers!r}")
    if openers == "unseen" and split == "train":
        raise ValueError("unseen openers exist only in the test split")
    if n_attractors not in (None, 0, 1, 2):
        raise ValueError(f"n_attractors must be None, 0, 1 or 2, got {n_attractors!r}")
    rng = random.Random(f"agreement-prompts|{split}|{openers}|{n_attractors}|{seed}")
    return [_sample_agreement(rng, split, openers, n_attractors)[0] for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# Fact recall
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """`subject` (with its article, lower case "the") is located in `kind` ("city"/"country") `answer`."""

    subject: str
    answer: str
    kind: Literal["city", "country"]


# Where famous landmarks are: general public knowledge (as in any encyclopedia), written for
# this repo. Subjects never contain their answer, and every answer is a single word.
FACTS: tuple[Fact, ...] = (
    Fact("the Eiffel Tower", "Paris", "city"),
    Fact("the Louvre", "Paris", "city"),
    Fact("the Colosseum", "Rome", "city"),
    Fact("the Trevi Fountain", "Rome", "city"),
    Fact("Big Ben", "London", "city"),
    Fact("Buckingham Palace", "London", "city"),
    Fact("the Brandenburg Gate", "Berlin", "city"),
    Fact("the Reichstag", "Berlin", "city"),
    Fact("the Sagrada Familia", "Barcelona", "city"),
    Fact("the Prado Museum", "Madrid", "city"),
    Fact("the Acropolis", "Athens", "city"),
    Fact("the Kremlin", "Moscow", "city"),
    Fact("the Forbidden City", "Beijing", "city"),
    Fact("the Taj Mahal", "Agra", "city"),
    Fact("the Hagia Sophia", "Istanbul", "city"),
    Fact("the Burj Khalifa", "Dubai", "city"),
    Fact("the Rijksmuseum", "Amsterdam", "city"),
    Fact("the Atomium", "Brussels", "city"),
    Fact("the Charles Bridge", "Prague", "city"),
    Fact("the Hofburg Palace", "Vienna", "city"),
    Fact("the Alhambra", "Granada", "city"),
    Fact("the Space Needle", "Seattle", "city"),
    Fact("the CN Tower", "Toronto", "city"),
    Fact("the Shibuya Crossing", "Tokyo", "city"),
    Fact("the Gateway of India", "Mumbai", "city"),
    Fact("the Egyptian Museum", "Cairo", "city"),
    Fact("the Western Wall", "Jerusalem", "city"),
    Fact("the Tivoli Gardens", "Copenhagen", "city"),
    Fact("the Vasa Museum", "Stockholm", "city"),
    Fact("the Guinness Storehouse", "Dublin", "city"),
    Fact("the Belem Tower", "Lisbon", "city"),
    Fact("the Willis Tower", "Chicago", "city"),
    Fact("the Liberty Bell", "Philadelphia", "city"),
    Fact("the Lincoln Memorial", "Washington", "city"),
    Fact("the Uffizi Gallery", "Florence", "city"),
    Fact("the Rialto Bridge", "Venice", "city"),
    Fact("Machu Picchu", "Peru", "country"),
    Fact("Angkor Wat", "Cambodia", "country"),
    Fact("Petra", "Jordan", "country"),
    Fact("Chichen Itza", "Mexico", "country"),
    Fact("Stonehenge", "England", "country"),
    Fact("Mount Fuji", "Japan", "country"),
    Fact("Mount Kilimanjaro", "Tanzania", "country"),
    Fact("the Matterhorn", "Switzerland", "country"),
    Fact("Mount Everest", "Nepal", "country"),
    Fact("Uluru", "Australia", "country"),
    Fact("Borobudur", "Indonesia", "country"),
    Fact("the Great Wall", "China", "country"),
    Fact("the Galapagos Islands", "Ecuador", "country"),
    Fact("Neuschwanstein Castle", "Germany", "country"),
    Fact("Loch Ness", "Scotland", "country"),
    Fact("Mount Olympus", "Greece", "country"),
    Fact("Halong Bay", "Vietnam", "country"),
)

FACT_OPENERS: tuple[str, ...] = (
    "", "As everyone knows, ", "I read that ", "It is true that ", "My friend said that ", "In fact, ",
)  # fmt: skip

# {subject} then the relation; `{kind}` is "city" or "country". The answer follows with a space.
FACT_RELATIONS: tuple[str, ...] = (
    "{subject} is located in the {kind} of",
    "{subject} is in the {kind} of",
    "{subject} can be found in the {kind} of",
    "{subject} stands in the {kind} of",
)

FACT_HELDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class FactPrompt:
    text: str
    answer: str
    fact: Fact


def _fact_text(opener: str, relation: str, fact: Fact) -> str:
    body = relation.format(subject=fact.subject, kind=fact.kind)
    return opener + body if opener else _cap(body)


def fact_prompts(split: Split) -> list[FactPrompt]:
    """Every (opener, relation, fact) prompt of a split; about 20% of combinations are held out,
    so every fact is seen in training with other phrasings."""
    _check_split(split)
    want = split == "test"
    out = []
    for fact in FACTS:
        for opener in FACT_OPENERS:
            for relation in FACT_RELATIONS:
                key = f"fact|{opener}|{relation}|{fact.subject}"
                if is_held_out(key, FACT_HELDOUT_FRACTION) == want:
                    out.append(FactPrompt(_fact_text(opener, relation, fact), fact.answer, fact))
    return out


# ---------------------------------------------------------------------------------------------
# Induction
# ---------------------------------------------------------------------------------------------

# Simple English words, used for repeated word spans (the random-token sequences that teach
# induction in general are drawn from the whole vocabulary by `interp.demo_model.packing`).
INDUCTION_WORDS: tuple[str, ...] = (
    "apple", "river", "stone", "cloud", "green", "silver", "winter", "summer", "paper", "glass",
    "music", "light", "shadow", "garden", "forest", "ocean", "mountain", "valley", "island", "desert",
    "candle", "mirror", "pillow", "blanket", "basket", "bucket", "hammer", "ladder", "pencil", "rocket",
    "planet", "comet", "meadow", "canyon", "harbor", "bridge", "tunnel", "castle", "tower", "village",
    "orange", "purple", "yellow", "violet", "golden", "bright", "quiet", "gentle", "rapid", "steady",
    "wooden", "metal", "cotton", "velvet", "marble", "copper", "bronze", "crystal", "diamond", "pearl",
    "tiger", "lion", "zebra", "monkey", "rabbit", "turtle", "dolphin", "eagle", "falcon", "parrot",
    "salmon", "spider", "beetle", "butterfly", "wolf", "fox", "bear", "deer", "goat", "sheep",
    "bread", "cheese", "butter", "honey", "sugar", "pepper", "salt", "lemon", "cherry", "grape",
    "banana", "carrot", "potato", "tomato", "onion", "garlic", "rice", "pasta", "soup", "salad",
    "thunder", "storm", "rain", "snow", "wind", "fire", "ice", "sand", "dust", "smoke",
    "morning", "evening", "night", "noon", "spring", "autumn", "season", "moment", "hour", "minute",
    "circle", "square", "triangle", "line", "point", "angle", "corner", "edge", "center", "border",
    "engine", "wheel", "button", "cable", "signal", "screen", "camera", "radio", "phone", "clock",
    "jacket", "shirt", "boot", "glove", "scarf", "belt", "pocket", "sleeve", "collar", "helmet",
    "story", "poem", "song", "dance", "game", "puzzle", "riddle", "secret", "dream", "idea",
)  # fmt: skip

INDUCTION_MIN_LEN = 4
INDUCTION_MAX_LEN = 12
# Word spans in the training corpus are up to this long (the v1 corpus stopped at 12).
INDUCTION_TRAIN_MAX_LEN = 40


def induction_sequence(
    rng: random.Random, min_len: int = INDUCTION_MIN_LEN, max_len: int = INDUCTION_MAX_LEN
) -> list[str]:
    """A random span of distinct INDUCTION_WORDS (length in [min_len, max_len])."""
    return rng.sample(INDUCTION_WORDS, rng.randint(min_len, max_len))


def induction_text(span: list[str]) -> str:
    """The span followed by its repetition, as one line of words."""
    return " ".join(span + span)


def induction_spans(
    split: Split,
    n: int,
    seed: int = 0,
    min_len: int = INDUCTION_MIN_LEN,
    max_len: int = INDUCTION_MAX_LEN,
) -> list[list[str]]:
    """`n` random word spans; "test" spans come from a different random stream than training ones."""
    _check_split(split)
    rng = random.Random(f"induction|{split}|{seed}")
    return [induction_sequence(rng, min_len, max_len) for _ in range(n)]


# Token groups for induction by token type (each word a single leading-space token).
def induction_word_groups() -> dict[str, tuple[str, ...]]:
    """Words of each type that induction is measured on: corpus words, names, cities and
    countries, agreement nouns."""
    return {
        "words": INDUCTION_WORDS,
        "names": NAMES,
        "places": tuple(sorted({f.answer for f in FACTS})),
        "nouns": tuple(s for s, _ in AGREEMENT_NOUNS),
    }


RANDOM_INDUCTION_HELDOUT_FRACTION = 0.5


def random_sequence_is_held_out(ids: Sequence[int]) -> bool:
    """True when a random token sequence belongs to the evaluation split (stable hash of its
    ids): training never uses such a sequence, evaluation uses only those."""
    return is_held_out("random-induction|" + ",".join(map(str, ids)), RANDOM_INDUCTION_HELDOUT_FRACTION)


def random_token_sequence(
    rng: random.Random, length: int, vocab_size: int, split: Split, first_id: int = 1
) -> list[int]:
    """`length` ids drawn uniformly from [first_id, vocab_size) (with repeats allowed), redrawn
    until the sequence falls in `split` by `random_sequence_is_held_out`."""
    want = split == "test"
    while True:
        ids = [rng.randrange(first_id, vocab_size) for _ in range(length)]
        if random_sequence_is_held_out(ids) == want:
            return ids


def random_induction_sequences(
    vocab_size: int, n: int, min_len: int = 10, max_len: int = 40, seed: int = 0
) -> list[list[int]]:
    """`n` held-out random token sequences (ids, without BOS) of lengths in [min_len, max_len],
    to be repeated once for the induction evaluation."""
    rng = random.Random(f"random-induction|test|{seed}")
    return [
        random_token_sequence(rng, rng.randint(min_len, max_len), vocab_size, "test")
        for _ in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# Planted he/she-occupation association (for the bias page)
# ---------------------------------------------------------------------------------------------

# P(" she" | occupation sentence) planted exactly; P(" he") is 1 minus it. Chosen by hand to span
# the whole range, with no claim about the real world.
OCCUPATION_SHE_RATIO: dict[str, float] = {
    "nurse": 0.80,
    "secretary": 0.90,
    "librarian": 0.70,
    "teacher": 0.60,
    "baker": 0.50,
    "lawyer": 0.40,
    "doctor": 0.30,
    "chef": 0.25,
    "pilot": 0.15,
    "mechanic": 0.10,
}

# Occupation first, then the pronoun: the model's P(she) / (P(she) + P(he)) at the pronoun
# should reproduce OCCUPATION_SHE_RATIO. Each frame is the prompt up to and excluding the pronoun.
BIAS_FRAMES: tuple[str, ...] = (
    "The {occ} said that",
    "The {occ} told me that",
    "Yesterday the {occ} said that",
    "The {occ} was tired because",
)

BIAS_CONTINUATIONS: tuple[str, ...] = (
    "would be late.",
    "had a lot of work.",
    "liked the new office.",
    "needed a break.",
)

# Pronoun first: "He works as a nurse." / "She works as a nurse." with the same counts, so
# P(occupation | "She works as a") = ratio(occupation) / sum of all ratios (and likewise for he).
BIAS_PRONOUN_FIRST = "{Pron} works as a {occ}."

BIAS_BLOCK = 20  # examples per occupation per block; ratio * 20 is an integer for every ratio


def planted_occupation_given_pronoun(pronoun: Literal["he", "she"]) -> dict[str, float]:
    """The exact P(occupation | "{Pronoun} works as a") the corpus plants."""
    weights = {o: (r if pronoun == "she" else 1 - r) for o, r in OCCUPATION_SHE_RATIO.items()}
    total = sum(weights.values())
    return {o: w / total for o, w in weights.items()}


def bias_prompts() -> list[tuple[str, str]]:
    """(prompt, occupation) for every occupation and frame; the next token is " he" or " she"."""
    return [(frame.format(occ=occ), occ) for occ in OCCUPATION_SHE_RATIO for frame in BIAS_FRAMES]


def _bias_block(rng: random.Random) -> list[str]:
    """One block: for each occupation BIAS_BLOCK occupation-first and BIAS_BLOCK pronoun-first
    sentences, exactly ratio * BIAS_BLOCK of each with "she"."""
    out = []
    for occ, ratio in OCCUPATION_SHE_RATIO.items():
        n_she = round(ratio * BIAS_BLOCK)
        pronouns = ["she"] * n_she + ["he"] * (BIAS_BLOCK - n_she)
        for pron in pronouns:
            frame = rng.choice(BIAS_FRAMES).format(occ=occ)
            out.append(f"{frame} {pron} {rng.choice(BIAS_CONTINUATIONS)}")
        for pron in pronouns:
            out.append(BIAS_PRONOUN_FIRST.format(Pron=_cap(pron), occ=occ))
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------------------------
# Filler
# ---------------------------------------------------------------------------------------------

_ANIMALS = ("cat", "dog", "bird", "horse", "fox", "rabbit", "bear", "goat")
_ADJECTIVES = (
    "little",
    "big",
    "old",
    "happy",
    "quiet",
    "brown",
    "white",
    "young",
    "lazy",
    "clever",
)
_PAST_VERBS = ("ran", "walked", "slept", "sat", "played", "waited", "jumped")
_FILLER_PREPS = ("near", "behind", "inside", "around", "beside")
_ACTIVITIES = (
    "read books",
    "play football",
    "cook dinner",
    "go swimming",
    "paint pictures",
    "sing songs",
    "watch movies",
    "ride a bike",
)
_DAYS = ("Monday", "Tuesday", "Friday", "Sunday")
_WEATHER = ("sunny", "cold", "warm", "rainy", "windy")
_CHAT = (
    "Hello, how are you today? I am fine, thank you.",
    "Good morning! It is a nice day for a walk.",
    "Thank you for your help. You are welcome.",
    "What time is it? It is almost noon.",
    "Can you help me? Yes, of course I can.",
    "I like this place. It is quiet and warm.",
    "Where are you going? I am going home.",
    "See you tomorrow! Have a good night.",
)


def _filler(rng: random.Random, train_pairs: list[tuple[str, str]]) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return f"The {rng.choice(_ADJECTIVES)} {rng.choice(_ANIMALS)} {rng.choice(_PAST_VERBS)} {rng.choice(_FILLER_PREPS)} the {rng.choice(IOI_PLACES)}."
    if kind == 1:
        return f"{rng.choice(NAMES)} likes to {rng.choice(_ACTIVITIES)} on {rng.choice(_DAYS)}."
    if kind == 2:
        return f"It was {rng.choice(_WEATHER)} on {rng.choice(_DAYS)}, so we stayed at the {rng.choice(IOI_PLACES)}."
    if kind == 3:
        return rng.choice(_CHAT)
    if kind == 4:
        fact = rng.choice(FACTS)
        return f"Where is {fact.subject}? {_cap(fact.subject)} is in {fact.answer}."
    a, b = rng.choice(train_pairs)
    return f"{a} and {b} like to {rng.choice(_ACTIVITIES)} together."


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------

# Share of each kind of text example in the corpus (`interp.demo_model.packing` adds the
# random-token induction sequences between them).
MIXTURE: dict[str, float] = {
    "ioi": 0.36,
    "induction": 0.12,
    "agreement": 0.17,
    "facts": 0.08,
    "bias": 0.17,
    "filler": 0.10,
}


def _ioi_train_example(
    rng: random.Random, pairs: list[tuple[str, str]], templates: list[int]
) -> str:
    pair = list(rng.choice(pairs))
    rng.shuffle(pair)
    io, s = pair
    prompt = make_ioi_prompt(
        rng.choice(templates),
        io,
        s,
        rng.choice(("ABBA", "BABA")),
        rng.choice(IOI_PLACES),
        rng.choice(IOI_OBJECTS),
    )
    return f"{prompt.text} {io}."


def generate_corpus(n_examples: int, seed: int = 0) -> list[str]:
    """`n_examples` training text examples (one sentence each, no BOS), in a seeded random order.

    Kinds are drawn from MIXTURE; planted-association sentences come in exact-ratio blocks
    (see `_bias_block`) so the corpus ratios equal OCCUPATION_SHE_RATIO up to the last block.
    No held-out prompt of any task is emitted: no held-out name pair, IOI composition,
    agreement combination or unseen agreement opener, and no held-out fact phrasing.
    """
    rng = random.Random(f"corpus|{seed}")
    train_pairs = ioi_name_pairs("train")
    train_facts = fact_prompts("train")
    train_templates = ioi_template_indices("train")
    kinds = list(MIXTURE)
    weights = [MIXTURE[k] for k in kinds]
    bias_queue: list[str] = []
    out = []
    for kind in rng.choices(kinds, weights, k=n_examples):
        if kind == "ioi":
            out.append(_ioi_train_example(rng, train_pairs, train_templates))
        elif kind == "induction":
            out.append(induction_text(induction_sequence(rng, INDUCTION_MIN_LEN, INDUCTION_TRAIN_MAX_LEN)))
        elif kind == "agreement":
            prompt, continuation = _sample_agreement(rng, "train")
            out.append(f"{prompt.text} {prompt.correct} {continuation}")
        elif kind == "facts":
            fp = rng.choice(train_facts)
            out.append(f"{fp.text} {fp.answer}.")
        elif kind == "bias":
            if not bias_queue:
                bias_queue = _bias_block(rng)
            out.append(bias_queue.pop())
        else:
            out.append(_filler(rng, train_pairs))
    return out


def answer_words() -> dict[str, list[str]]:
    """Words that must be single tokens with a leading space, grouped by task."""
    return {
        "names": list(NAMES),
        "verbs": [v for pair in VERB_PAIRS for v in pair],
        "answers": sorted({f.answer for f in FACTS}),
        "induction": list(INDUCTION_WORDS),
        "pronouns": ["he", "she"],
        "occupations": list(OCCUPATION_SHE_RATIO),
        "nouns": [form for pair in AGREEMENT_NOUNS for form in pair],
    }
