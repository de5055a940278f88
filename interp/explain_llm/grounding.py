"""Grounding: is every component, token and value an AI-written reply names in the result?

The reply is scanned for component names ("L9H6", "head 3.1", "layer 3 MLP", "L2 attn",
"L5 pos 7"), quoted tokens, and numbers written as values (decimals, percentages, scientific
notation; bare integers are counts and indices and are not checked). Each is looked up in the
facts the reply was written from; what is not found comes back as an unverified span. A name that
is found exists in the result; whether the reply describes it correctly is still the reader's call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from interp.explain import Explanation

N = r"(\d{1,3})"
SEPARATOR = r"\s*(?:,|and|or|&|/)\s*"
NOT_A_NORM = r"(?!\s*-?\s*(?:norm|distance|loss|penalt|regulari))"
ATTENTION_WORDS = r"(MLP|attn|attention)"
ATTENTION_SITES = ("attn_out", "z", "pattern", "q", "k", "v", "result")

# (kind, pattern): earlier patterns claim their text first.
COMPONENT_PATTERNS = [
    ("head_list", rf"\bheads?\s+(\d{{1,3}}\.\d{{1,3}}(?:{SEPARATOR}(?:heads?\s+)?\d{{1,3}}\.\d{{1,3}})*)"),
    ("head", rf"\bL{N}\s*[.:]?\s*H{N}\b"),
    ("head", rf"\blayer\s+{N},?\s+head\s+{N}\b"),
    ("head_reversed", rf"\bhead\s+{N}\s+(?:of|in)\s+layer\s+{N}\b"),
    ("block_after", rf"\b(?:L|layer\s+){N}(?:'s)?\s+{ATTENTION_WORDS}\b"),
    ("block_before", rf"\b{ATTENTION_WORDS}\s+(?:(?:in|of|at)\s+)?(?:layer\s+|L){N}\b"),
    ("block_before", rf"\b{ATTENTION_WORDS}\s*{N}\b"),
    ("cell", rf"\b(?:L|layer\s+){N},?\s+(?:at\s+)?pos(?:ition)?\s+{N}\b"),
    ("layer", rf"\bL{N}\b{NOT_A_NORM}"),
    ("layer_list", rf"\blayers?\s+(\d{{1,3}}(?:{SEPARATOR}\d{{1,3}})*)\b"),
    ("position", rf"\bpos(?:ition)?s?\s+{N}\b"),
]
COMPILED = [(kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in COMPONENT_PATTERNS]

QUOTED = re.compile(r"""(?<!\w)'([^'\n]{1,40})'(?!\w)|"([^"\n]{1,40})"|“([^”\n]{1,40})”"""
                    r"|‘([^’\n]{1,40})’|`([^`\n]{1,40})`")
NUMBER = re.compile(r"(?<![\w.])[-−]?(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(\s*(?:%|percent\b|per cent\b))?")
MARKDOWN_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Mention:
    """One checked name or number: where it is in the reply, what kind, and whether the
    result's facts hold it."""

    kind: str  # "component" | "token" | "number"
    text: str
    start: int
    end: int
    verified: bool


@dataclass(frozen=True)
class GroundingReport:
    """Every checked mention of a reply, in order; `unverified` are those not in the result."""

    mentions: tuple[Mention, ...]

    @property
    def unverified(self) -> tuple[Mention, ...]:
        return tuple(m for m in self.mentions if not m.verified)

    @property
    def n_checked(self) -> int:
        return len(self.mentions)

    @property
    def n_unverified(self) -> int:
        return len(self.unverified)

    def summary(self) -> str:
        """One line for above the text: how many names and numbers were checked, how many not found."""
        if not self.mentions:
            return "No component names, tokens or values to check in this reply."
        if not self.unverified:
            return f"All {self.n_checked} names and values in this reply are in the result."
        return (f"{self.n_unverified} of {self.n_checked} names and values in this reply are not "
                "in the result (highlighted): treat them as unverified.")


@dataclass(frozen=True)
class KnownFacts:
    """What a reply may name: components (("head", 1, 3), ("cell", 0, 2), ...), values, and
    strings (labels, tokens, options) in case-folded form, plus texts a quote may come from."""

    components: frozenset
    values: tuple[float, ...]
    strings: frozenset
    texts: tuple[str, ...]


def component_keys(kind: str, match: re.Match) -> list[tuple]:
    """The components a matched name refers to (a list names several)."""
    groups = match.groups()
    if kind == "head_list":
        pairs = re.findall(r"(\d{1,3})\.(\d{1,3})", groups[0])
        return [("head", int(layer), int(head)) for layer, head in pairs]
    if kind == "head":
        return [("head", int(groups[0]), int(groups[1]))]
    if kind == "head_reversed":
        return [("head", int(groups[1]), int(groups[0]))]
    if kind == "block_after":
        return [(block_kind(groups[1]), int(groups[0]))]
    if kind == "block_before":
        return [(block_kind(groups[0]), int(groups[1]))]
    if kind == "cell":
        return [("cell", int(groups[0]), int(groups[1]))]
    if kind == "layer":
        return [("layer", int(groups[0]))]
    if kind == "layer_list":
        return [("layer", int(n)) for n in re.findall(r"\d{1,3}", groups[0])]
    return [("position", int(groups[0]))]


def block_kind(word: str) -> str:
    """"mlp" for the word MLP, else "attn"."""
    return "mlp" if word.lower() == "mlp" else "attn"


def find_components(text: str) -> list[tuple[int, int, list[tuple]]]:
    """(start, end, components) for every component name in `text`, earlier patterns first,
    no two overlapping."""
    claimed: list[tuple[int, int, list[tuple]]] = []
    for kind, pattern in COMPILED:
        for match in pattern.finditer(text):
            start, end = match.span()
            if not any(start < e and s < end for s, e, _ in claimed):
                claimed.append((start, end, component_keys(kind, match)))
    return sorted(claimed)


def implied(components: Iterable[tuple], site: str) -> set[tuple]:
    """A head or cell also names its layer (and a cell its position); a layer of an MLP or
    attention site also names that layer's MLP or attention block."""
    known = set(components)
    for component in list(known):
        if component[0] in ("head", "cell", "mlp", "attn"):
            known.add(("layer", component[1]))
        if component[0] == "cell":
            known.add(("position", component[2]))
        if component[0] == "head":
            known.add(("attn", component[1]))
    mlp = "mlp" in site
    attention = site in ATTENTION_SITES or site.startswith("attn")
    for component in list(known):
        if component[0] == "layer":
            if mlp:
                known.add(("mlp", component[1]))
            if attention:
                known.add(("attn", component[1]))
    return known


def walk(value) -> Iterable[object]:
    """Every leaf value of nested dicts, lists and tuples."""
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from walk(item)
    else:
        yield value


def quoted_texts(text: str) -> list[str]:
    """The texts inside quotation marks in `text`."""
    return [next(group for group in match.groups() if group is not None)
            for match in QUOTED.finditer(text)]


def fold(text: str) -> str:
    """`text` with whitespace collapsed and case folded, for comparisons."""
    return " ".join(text.split()).casefold()


def written_values(text: str) -> list[float]:
    """Every number written in `text`, as floats."""
    return [value for value, _ in (number_value(m) for m in NUMBER.finditer(text)) if value is not None]


def number_value(match: re.Match) -> tuple[float | None, float]:
    """(value, rounding half-width) of a written number; value None when it is a bare integer
    (a count, an index or an ordinal, which are not checked)."""
    digits, percent = match.group(1), match.group(2)
    if not percent and not re.search(r"[.eE]", digits):
        return None, 0.0
    try:
        exponent = Decimal(digits).as_tuple().exponent
    except InvalidOperation:
        return None, 0.0
    scale = 100.0 if percent else 1.0
    return float(digits) / scale, 0.5 * 10.0 ** int(exponent) / scale


def known_facts(explanation: Explanation, tokens: Iterable[str] = (), prompt: str = "",
                description: str = "") -> KnownFacts:
    """Everything a reply about `explanation` may name: the facts' strings (and the components
    and quoted tokens inside labels), the facts' numbers and the numbers its text states, the
    result's tokens, and the prompt, summary and method description a quote may come from.
    The facts' `site` says whether a layer's MLP or attention block is part of the result."""
    strings: set[str] = set()
    values: list[float] = []
    components: set[tuple] = set()
    for value in walk(explanation.facts):
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            values.append(abs(float(value)))
        elif isinstance(value, str):
            strings.add(fold(value))
            strings.update(fold(quote) for quote in quoted_texts(value))
            components.update(c for _, _, found in find_components(value) for c in found)
    summary = MARKDOWN_ESCAPE.sub(r"\1", explanation.markdown)
    values += [abs(v) for v in written_values(summary)]
    strings.update(fold(token) for token in tokens if token.strip())
    site = str(explanation.facts.get("site", "")).lower()
    return KnownFacts(components=frozenset(implied(components, site)), values=tuple(values),
                      strings=frozenset(strings),
                      texts=tuple(fold(t) for t in (prompt, summary, description) if t))


def value_is_known(value: float, half_width: float, known: KnownFacts) -> bool:
    """A written value is known when it is a rounding of a fact's value (either sign)."""
    tolerance = half_width * (1 + 1e-9) + 1e-12
    return any(abs(abs(value) - fact) <= tolerance for fact in known.values)


def quote_is_known(quote: str, known: KnownFacts) -> bool:
    """Whether a quoted text occurs in the result's known strings, tokens or prompt."""
    folded = fold(quote)
    if not folded:
        return True
    if folded in known.strings:
        return True
    pattern = re.compile(rf"(?<!\w){re.escape(folded)}(?!\w)")
    return any(pattern.search(text) for text in known.texts)


def check_grounding(reply: str, known: KnownFacts) -> GroundingReport:
    """Every component name, quoted token and written value in `reply`, each marked verified
    when `known` holds it."""
    mentions: list[Mention] = []
    spans = find_components(reply)
    for start, end, found in spans:
        mentions.append(Mention("component", reply[start:end], start, end,
                                all(c in known.components for c in found)))
    claimed = [(s, e) for s, e, _ in spans]
    for match in QUOTED.finditer(reply):
        start, end = match.span()
        if any(start < e and s < end for s, e in claimed):
            continue
        quote = next(group for group in match.groups() if group is not None)
        mentions.append(Mention("token", reply[start:end], start, end, quote_is_known(quote, known)))
        claimed.append((start, end))
    for match in NUMBER.finditer(reply):
        start, end = match.span()
        if any(start < e and s < end for s, e in claimed):
            continue
        value, half_width = number_value(match)
        if value is None:
            continue
        end = start + len(match.group(0).rstrip())
        mentions.append(Mention("number", reply[start:end], start, end,
                                value_is_known(value, half_width, known)))
    return GroundingReport(mentions=tuple(sorted(mentions, key=lambda m: m.start)))
