"""Seeded synthetic corpus for the bundled demo model, and the task data the tests reuse.

The corpus mixes six kinds of one-sentence examples, each a behaviour one of the Workbench pages
studies: indirect-object identification (IOI), subject-verb agreement with attractors, fact
recall, induction on repeated random word spans, a planted he/she-occupation association, and
plain filler text. Every task also exposes held-out prompts (never emitted by `generate_corpus`)
so tests and pages can check the model on sentences it has not seen.

Splits are decided by a stable hash of each prompt's defining parts (`is_held_out`), so a prompt
is held out or not independently of the random seed and of the order things are generated in.
"""

from __future__ import annotations

import hashlib
import random
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

# Each template is the prompt up to the indirect object; the answer is " {IO}".
# {A} and {B} are the two names of the first clause, {S} the repeated subject.
IOI_TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the {place}, {S} gave a {obj} to",
    "After {A} and {B} went to the {place}, {S} handed a {obj} to",
    "Then, {A} and {B} had a long day at the {place}. {S} gave a {obj} to",
    "While {A} and {B} were working at the {place}, {S} passed a {obj} to",
    "Friends {A} and {B} found a {obj} at the {place}. {S} threw it to",
)

IOI_PLACES: tuple[str, ...] = (
    "store", "park", "school", "office", "garden", "market", "station", "beach", "library",
    "restaurant", "museum", "river", "house", "farm",
)  # fmt: skip

IOI_OBJECTS: tuple[str, ...] = (
    "drink", "book", "ball", "letter", "gift", "bag", "cake", "ring", "pen", "map", "hat", "coin",
)  # fmt: skip

IOI_HELDOUT_PAIR_FRACTION = 0.12


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
    """One IOI prompt. `order` is "ABBA" when the indirect object is named first, else "BABA"."""

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
    text = IOI_TEMPLATES[template].format(A=a, B=b, S=s, place=place, obj=obj)
    return IOIPrompt(text=text, io=io, s=s, order=order, template=template)  # type: ignore[arg-type]


def ioi_prompts(split: Split, n: int, seed: int = 0) -> list[IOIPrompt]:
    """`n` IOI prompts of a split, half ABBA and half BABA, templates cycled evenly."""
    rng = random.Random(f"ioi-prompts|{split}|{seed}")
    pairs = ioi_name_pairs(split)
    prompts = []
    for i in range(n):
        pair = list(rng.choice(pairs))
        rng.shuffle(pair)
        io, s = pair
        order = "ABBA" if i % 2 == 0 else "BABA"
        template = (i // 2) % len(IOI_TEMPLATES)
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

# Sentence openers; the subject's article is lower-cased after a non-empty opener.
AGREEMENT_OPENERS: tuple[str, ...] = ("", "I think ", "We know that ", "They said that ", "Maybe ")

AGREEMENT_HELDOUT_FRACTION = 0.15


@dataclass(frozen=True)
class AgreementPrompt:
    """A prompt ending just before the verb; `correct` / `wrong` are verbs without leading space.

    `structure` is "simple" (no attractor) or "pp" (a prepositional phrase between subject and
    verb); `attractor_mismatch` is True when the phrase's noun has the opposite number.
    """

    text: str
    correct: str
    wrong: str
    subject_plural: bool
    structure: Literal["simple", "pp"]
    attractor_mismatch: bool


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _agreement_key(
    opener: str,
    noun: int,
    plural: bool,
    prep: str | None,
    attr: int | None,
    attr_plural: bool | None,
) -> str:
    if prep is None:
        # Simple sentences are held out by their whole prompt (opener, subject and number).
        return f"agr|simple|{opener}|{noun}|{plural}"
    # Attractor sentences are held out by (subject noun, attractor noun) combination.
    return f"agr|pp|{noun}|{plural}|{attr}|{attr_plural}"


def _sample_agreement(rng: random.Random, split: Split) -> tuple[AgreementPrompt, str]:
    """Draw one agreement prompt of `split` (rejection sampling on the hash split)."""
    want = split == "test"
    while True:
        opener = rng.choice(AGREEMENT_OPENERS)
        noun = rng.randrange(len(AGREEMENT_NOUNS))
        plural = rng.random() < 0.5
        verb = rng.randrange(len(VERB_PAIRS))
        use_pp = rng.random() < 0.65
        prep = attr = attr_plural = None
        if use_pp:
            prep = rng.choice(AGREEMENT_PREPOSITIONS)
            attr = rng.choice([i for i in range(len(AGREEMENT_NOUNS)) if i != noun])
            attr_plural = (not plural) if rng.random() < 0.7 else plural
        key = _agreement_key(opener, noun, plural, prep, attr, attr_plural)
        if is_held_out(key, AGREEMENT_HELDOUT_FRACTION) != want:
            continue
        subject = f"the {AGREEMENT_NOUNS[noun][int(plural)]}"
        if prep is not None:
            subject += f" {prep} the {AGREEMENT_NOUNS[attr][int(attr_plural)]}"  # type: ignore[index, arg-type]
        text = _cap(opener + subject) if opener == "" else opener + subject
        sing, plur = VERB_PAIRS[verb]
        correct, wrong = (plur, sing) if plural else (sing, plur)
        continuation = rng.choice(VERB_CONTINUATIONS[sing])
        prompt = AgreementPrompt(
            text=text,
            correct=correct,
            wrong=wrong,
            subject_plural=plural,
            structure="pp" if prep is not None else "simple",
            attractor_mismatch=prep is not None and attr_plural != plural,
        )
        return prompt, continuation


def agreement_prompts(split: Split, n: int, seed: int = 0) -> list[AgreementPrompt]:
    """`n` agreement prompts of a split: about 65% with an attractor phrase, most of them of the
    opposite number ("The key to the cabinets" -> " is")."""
    _check_split(split)
    rng = random.Random(f"agreement-prompts|{split}|{seed}")
    return [_sample_agreement(rng, split)[0] for _ in range(n)]


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

# Simple English words used only for the repeated random spans.
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


def induction_sequence(
    rng: random.Random, min_len: int = INDUCTION_MIN_LEN, max_len: int = INDUCTION_MAX_LEN
) -> list[str]:
    """A random span of distinct INDUCTION_WORDS (length in [min_len, max_len])."""
    return rng.sample(INDUCTION_WORDS, rng.randint(min_len, max_len))


def induction_text(span: list[str]) -> str:
    """The span followed by its repetition, as one line of words."""
    return " ".join(span + span)


def induction_spans(split: Split, n: int, seed: int = 0) -> list[list[str]]:
    """`n` random spans; "test" spans come from a different random stream than training ones."""
    _check_split(split)
    rng = random.Random(f"induction|{split}|{seed}")
    return [induction_sequence(rng) for _ in range(n)]


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

# Share of each kind of example in the corpus.
MIXTURE: dict[str, float] = {
    "ioi": 0.33,
    "induction": 0.28,
    "agreement": 0.10,
    "facts": 0.09,
    "bias": 0.13,
    "filler": 0.07,
}


def _ioi_train_example(rng: random.Random, pairs: list[tuple[str, str]]) -> str:
    pair = list(rng.choice(pairs))
    rng.shuffle(pair)
    io, s = pair
    prompt = make_ioi_prompt(
        rng.randrange(len(IOI_TEMPLATES)),
        io,
        s,
        rng.choice(("ABBA", "BABA")),
        rng.choice(IOI_PLACES),
        rng.choice(IOI_OBJECTS),
    )
    return f"{prompt.text} {io}."


def generate_corpus(n_examples: int, seed: int = 0) -> list[str]:
    """`n_examples` training examples (one sentence each, no BOS), in a seeded random order.

    Kinds are drawn from MIXTURE; planted-association sentences come in exact-ratio blocks
    (see `_bias_block`) so the corpus ratios equal OCCUPATION_SHE_RATIO up to the last block.
    No held-out prompt of any task is emitted.
    """
    rng = random.Random(f"corpus|{seed}")
    train_pairs = ioi_name_pairs("train")
    train_facts = fact_prompts("train")
    kinds = list(MIXTURE)
    weights = [MIXTURE[k] for k in kinds]
    bias_queue: list[str] = []
    out = []
    for kind in rng.choices(kinds, weights, k=n_examples):
        if kind == "ioi":
            out.append(_ioi_train_example(rng, train_pairs))
        elif kind == "induction":
            out.append(induction_text(induction_sequence(rng)))
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
    }
