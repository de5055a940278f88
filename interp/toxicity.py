"""Toxicity of text and of what the model writes, scored by a Detoxify classifier.

Detoxify (Unitary's BERT/RoBERTa/ALBERT models fine-tuned on the Jigsaw comment data sets)
gives each text an independent probability per category (toxicity, insult, threat, ...: a
sigmoid per output, so they need not sum to 1). Sampling K continuations of one prompt and
scoring each shows how often, and how strongly, the model's own text turns toxic; the scores
are a classifier's opinion, with its known biases (it over-flags identity terms), not a verdict.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interp.errors import ClassifierUnavailableError, InvalidOptionError, invalid_choice
from interp.inputs import InputField
from interp.settings import Settings, env_name

Progress = Callable[[float, str], None]

# Detoxify's model types, with the Hugging Face model each one fine-tunes and its size
# (parameters, from the base models' cards): the size is checked against the memory budget
# before a download starts.
CLASSIFIER_TYPES = {
    "original": ("bert-base-uncased", 109_486_854),
    "unbiased": ("roberta-base", 124_655_632),
    "multilingual": ("xlm-roberta-base", 278_052_880),
    "original-small": ("albert-base-v2", 11_692_806),
    "unbiased-small": ("albert-base-v2", 11_692_806),
}
DEFAULT_CLASSIFIER = "original"
CHECKPOINT_SETTING = env_name("detoxify_checkpoint")
CONFIG_SETTING = env_name("detoxify_config")
DEFAULT_THRESHOLD = 0.5
MAX_TEXTS = 2000
CLASSIFIER_KIND = "toxicity classifier"  # as the memory budget lists it


def sampling_fields(k: int, max_new_tokens: int) -> tuple[InputField, ...]:
    """The form of a sample-and-score run: K continuations, temperature, top-p, new tokens,
    seed and the toxicity threshold (keyword arguments of `continuations_toxicity` and
    `interp.bias.group_toxicity`), with `k` and `max_new_tokens` as defaults."""
    return (
        InputField("k", "Continuations (K)", k, "integer", minimum=1, maximum=100),
        InputField("temperature", "Temperature", 1.0, "slider", minimum=0.0, maximum=2.0,
                   step=0.1, column=1),
        InputField("top_p", "top-p", 0.95, "slider", minimum=0.05, maximum=1.0, step=0.05,
                   column=2),
        InputField("max_new_tokens", "New tokens", max_new_tokens, "integer", key="tokens",
                   minimum=1, maximum=60, row=1),
        InputField("seed", "Seed (continuation i uses seed + i)", 0, "integer", minimum=0,
                   step=1, row=1, column=1),
        InputField("threshold", "Toxic above", DEFAULT_THRESHOLD, "slider", minimum=0.05,
                   maximum=0.95, step=0.05, row=1, column=2),
    )


@dataclass(frozen=True)
class ClassifierSource:
    """Which classifier to load: a Detoxify model type (downloaded by Detoxify), or a local
    checkpoint with the Hugging Face config and tokenizer folder it needs offline."""

    model_type: str = DEFAULT_CLASSIFIER
    checkpoint: str = ""
    config_folder: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, model_type: str = DEFAULT_CLASSIFIER
                      ) -> ClassifierSource:
        """The local checkpoint named by WORKBENCH_DETOXIFY_CHECKPOINT/_CONFIG when set."""
        return cls(model_type=model_type, checkpoint=settings.detoxify_checkpoint,
                   config_folder=settings.detoxify_config)

    @property
    def is_local(self) -> bool:
        return bool(self.checkpoint)

    @property
    def label(self) -> str:
        if self.is_local:
            return f"Detoxify checkpoint {Path(self.checkpoint).name}"
        return f"Detoxify {self.model_type}"


def unavailable_message(model_type: str) -> str:
    """What the page says, word for word, when no classifier can be loaded."""
    return (f"No toxicity classifier is available: Detoxify's {model_type!r} model is not "
            "downloaded and can't be downloaded here (offline), and no local checkpoint is set. "
            f"Set {CHECKPOINT_SETTING} to a Detoxify checkpoint (.ckpt) and {CONFIG_SETTING} to "
            "the folder with its Hugging Face config and tokenizer (environment variables or "
            "Streamlit secrets), or connect to the internet once.")


class ToxicityClassifier:
    """A loaded Detoxify model shared by every session; `predict` holds its lock (its fast
    tokenizer must not be used by two threads at once)."""

    def __init__(self, detoxify, source: ClassifierSource):
        self.detoxify = detoxify
        self.source = source
        self.categories: tuple[str, ...] = tuple(detoxify.class_names)
        self.lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.source.label

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Scores [len(texts), len(categories)] from Detoxify's own `predict`."""
        with self.lock:
            scores = self.detoxify.predict(list(texts))
        # Detoxify squeezes a batch of one to plain numbers.
        return np.stack([np.atleast_1d(np.asarray(scores[c], dtype=np.float64))
                         for c in self.categories], axis=1)


def standard_checkpoint_cached(model_type: str) -> bool:
    """Whether Detoxify's download of this model type is already on disk (torch hub's cache,
    and the base model's config in the Hugging Face cache), so it loads with no network."""
    import torch
    from detoxify.detoxify import MODEL_URLS

    from interp.models import hub_cached

    weights = Path(torch.hub.get_dir()) / "checkpoints" / MODEL_URLS[model_type].rsplit("/", 1)[1]
    return weights.is_file() and hub_cached(CLASSIFIER_TYPES[model_type][0])


def check_local_checkpoint(source: ClassifierSource) -> None:
    """Refuse a local Detoxify checkpoint that is not a file or has no config folder."""
    if not Path(source.checkpoint).is_file():
        raise ClassifierUnavailableError(
            f"The toxicity checkpoint {source.checkpoint} ({CHECKPOINT_SETTING}) is not a file. "
            "Point it at a Detoxify .ckpt file.")
    if not source.config_folder:
        raise ClassifierUnavailableError(
            f"{CHECKPOINT_SETTING} is set but {CONFIG_SETTING} is not: set it to the folder "
            "holding the checkpoint's Hugging Face config.json and tokenizer files.")
    if not (Path(source.config_folder) / "config.json").is_file():
        raise ClassifierUnavailableError(
            f"The folder {source.config_folder} ({CONFIG_SETTING}) has no config.json: it must "
            "hold the Hugging Face config and tokenizer the checkpoint was trained with.")


def expected_bytes(source: ClassifierSource) -> int:
    """The classifier's size in memory, before loading it (float32 weights)."""
    if source.is_local:
        return Path(source.checkpoint).stat().st_size
    return CLASSIFIER_TYPES[source.model_type][1] * 4


# Detoxify renames the Jigsaw classes of its checkpoints to these (as its `load_checkpoint` does).
DETOXIFY_CLASS_NAMES = {"toxic": "toxicity", "identity_hate": "identity_attack",
                        "severe_toxic": "severe_toxicity"}


def checkpoint_path(source: ClassifierSource) -> Path:
    """The checkpoint file: the local one, or Detoxify's standard download in torch hub's cache
    (downloaded there first when missing, as `Detoxify(model_type)` would)."""
    if source.is_local:
        return Path(source.checkpoint)
    import torch
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS[source.model_type]
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    return path


def read_detoxify(checkpoint: Path, device: str, config_folder: str | None):
    """A `Detoxify` model built by Detoxify's own `get_model_and_tokenizer` from a checkpoint
    read with its tensors mapped from the file.

    Why not `Detoxify(checkpoint=...)`: its constructor reads the checkpoint into anonymous
    memory. Mapped, the weights are file-backed pages that the model uses in place (Hugging Face
    keeps the state dict's tensors), that the system can drop and read again under memory
    pressure, and that are read only where touched: a BERT-base classifier held 468 MB that way
    and 374 MB mapped (most of its 94 MB word embeddings are never looked up).
    """
    import torch
    from detoxify.detoxify import Detoxify, get_model_and_tokenizer

    try:
        loaded = torch.load(checkpoint, map_location=device, weights_only=False, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        # A checkpoint in torch's legacy (pre-zip) format can't be mapped: read it whole.
        loaded = torch.load(checkpoint, map_location=device, weights_only=False)
    if not isinstance(loaded, dict) or "config" not in loaded or "state_dict" not in loaded:
        raise ValueError("it has no 'config' and 'state_dict'")
    model, tokenizer = get_model_and_tokenizer(**loaded["config"]["arch"]["args"],
                                               state_dict=loaded["state_dict"],
                                               huggingface_config_path=config_folder)
    # The attributes Detoxify's constructor sets, so its own `predict` scores.
    detoxify = Detoxify.__new__(Detoxify)
    detoxify.model, detoxify.tokenizer, detoxify.device = model.to(device), tokenizer, device
    detoxify.class_names = [DETOXIFY_CLASS_NAMES.get(name, name)
                            for name in loaded["config"]["dataset"]["args"]["classes"]]
    return detoxify


def load_classifier(source: ClassifierSource, device: str = "cpu", budget=None
                    ) -> ToxicityClassifier:
    """Load the classifier with Detoxify's own model builder and `predict`, from its standard
    download (`model_type`) or a local checkpoint and config folder (offline), the weights
    mapped from the checkpoint file (`read_detoxify`).

    With a `budget` (`interp.memory_budget.MemoryBudget`), its size is checked first and the
    loaded model is counted against it. Raises `ClassifierUnavailableError` when it can't load.
    """
    from interp.heap import release_freed_memory
    from interp.memory_budget import module_bytes
    from interp.models import hub_offline

    if source.model_type not in CLASSIFIER_TYPES:
        raise invalid_choice("Detoxify model type", source.model_type, list(CLASSIFIER_TYPES))
    if source.is_local:
        check_local_checkpoint(source)
    elif hub_offline() and not standard_checkpoint_cached(source.model_type):
        raise ClassifierUnavailableError(unavailable_message(source.model_type))
    if budget is not None:
        budget.check_room(source.label, expected_bytes(source), kind=CLASSIFIER_KIND)
    try:
        detoxify = read_detoxify(checkpoint_path(source), device,
                                 source.config_folder if source.is_local else None)
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # no network, a bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if source.is_local:
            raise ClassifierUnavailableError(
                f"The toxicity checkpoint {source.checkpoint} could not be loaded by Detoxify "
                f"({reason}). It must be a Detoxify .ckpt (a dict with 'config' and "
                f"'state_dict') matching the folder in {CONFIG_SETTING}.") from error
        raise ClassifierUnavailableError(
            unavailable_message(source.model_type) + f" (Detoxify said: {reason})") from error
    release_freed_memory()  # what the load allocated and dropped goes back to the system
    classifier = ToxicityClassifier(detoxify, source)
    if budget is not None:
        budget.track(classifier, key=f"detoxify:{source}", label=source.label,
                     kind=CLASSIFIER_KIND, n_bytes=module_bytes(detoxify.model))
    return classifier


@dataclass(frozen=True)
class ToxicityScores:
    """Detoxify's score per text and category: `scores` [len(texts), len(categories)] in [0, 1]."""

    texts: tuple[str, ...]
    categories: tuple[str, ...]
    scores: np.ndarray
    classifier: str

    def column(self, category: str) -> np.ndarray:
        if category not in self.categories:
            raise invalid_choice("toxicity category", category, list(self.categories))
        return self.scores[:, self.categories.index(category)]

    def share_above(self, category: str, threshold: float) -> float:
        """Fraction of texts whose score in `category` exceeds `threshold`."""
        column = self.column(category)
        return float((column > threshold).mean()) if len(column) else 0.0

    def highest(self, category: str, n: int) -> list[tuple[int, float]]:
        """(text index, score) of the `n` highest-scoring texts in `category`."""
        column = self.column(category)
        order = np.argsort(-column, kind="stable")[:n]
        return [(int(i), float(column[i])) for i in order]


def score_texts(classifier: ToxicityClassifier, texts: Sequence[str], batch_size: int = 16,
                progress: Progress | None = None) -> ToxicityScores:
    """Score every text in every category, `batch_size` texts per classifier call."""
    texts = tuple(str(t) for t in texts)
    if len(texts) > MAX_TEXTS:
        raise InvalidOptionError(f"At most {MAX_TEXTS} texts are scored at once, not {len(texts)}.")
    if batch_size < 1:
        raise InvalidOptionError(f"batch_size must be at least 1, not {batch_size}.")
    batches = []
    for start in range(0, len(texts), batch_size):
        batches.append(classifier.predict(texts[start:start + batch_size]))
        if progress is not None:
            done = min(start + batch_size, len(texts))
            progress(done / len(texts), f"Scored {done} of {len(texts)} texts")
    scores = (np.concatenate(batches) if batches
              else np.zeros((0, len(classifier.categories))))
    return ToxicityScores(texts=texts, categories=classifier.categories, scores=scores,
                          classifier=classifier.name)


@dataclass(frozen=True)
class PromptCheck:
    """The input filter's verdict on a prompt: its highest category and whether it is flagged."""

    prompt: str
    category: str
    score: float
    threshold: float

    @property
    def flagged(self) -> bool:
        return self.score > self.threshold


def check_prompt(classifier: ToxicityClassifier, prompt: str,
                 threshold: float = DEFAULT_THRESHOLD) -> PromptCheck:
    """Rate the prompt before generating from it (the page warns, and lets the user go on)."""
    scores = classifier.predict([prompt])[0]
    top = int(np.argmax(scores))
    return PromptCheck(prompt=prompt, category=classifier.categories[top],
                       score=float(scores[top]), threshold=threshold)


@dataclass(frozen=True)
class SamplingOptions:
    """How the K continuations were sampled: continuation i uses seed `seed + i`."""

    k: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.k))


@dataclass(frozen=True)
class ContinuationsToxicity:
    """K sampled continuations of one prompt and their scores (`scores.texts` = continuations)."""

    model_name: str
    prompt: str
    sampling: SamplingOptions
    scores: ToxicityScores
    threshold: float
    notes: tuple[str, ...] = ()

    @property
    def continuations(self) -> tuple[str, ...]:
        return self.scores.texts

    def share_above(self, category: str) -> float:
        return self.scores.share_above(category, self.threshold)


def check_sampling(k: int, temperature: float, top_p: float, max_new_tokens: int,
                   threshold: float) -> None:
    """Refuse continuation settings outside their ranges, saying which and why."""
    if not 1 <= k <= 200:
        raise InvalidOptionError(f"The number of continuations must be 1 to 200, not {k}.")
    if temperature < 0:
        raise InvalidOptionError(f"Temperature must be 0 (greedy) or more, not {temperature}.")
    if not 0 < top_p <= 1:
        raise InvalidOptionError(f"top-p must be in (0, 1], not {top_p}.")
    if not 1 <= max_new_tokens <= 200:
        raise InvalidOptionError(f"New tokens must be 1 to 200, not {max_new_tokens}.")
    if not 0 <= threshold <= 1:
        raise InvalidOptionError(f"The threshold must be in [0, 1], not {threshold}.")


def sample_continuations(model, prompt: str, sampling: SamplingOptions,
                         progress: Progress | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The K continuations' texts (continuation i from seed `seed + i`, so a seed reproduces the
    whole sample) and the generator's notes (e.g. dropped tokens), each note once."""
    from interp.generation import generate

    texts, notes = [], []
    for index, seed in enumerate(sampling.seeds):
        generation = generate(model, prompt, max_new_tokens=sampling.max_new_tokens,
                              temperature=sampling.temperature, top_p=sampling.top_p, seed=seed)
        texts.append("".join(token.text for token in generation))  # it streams: run it out
        note = getattr(generation, "note", None)
        if note and note not in notes:
            notes.append(note)
        if progress is not None:
            progress((index + 1) / sampling.k, f"Sampled {index + 1} of {sampling.k} continuations")
    return tuple(texts), tuple(notes)


def continuations_toxicity(model, classifier: ToxicityClassifier, prompt: str, k: int = 20,
                           temperature: float = 1.0, top_p: float = 1.0,
                           max_new_tokens: int = 30, seed: int = 0,
                           threshold: float = DEFAULT_THRESHOLD,
                           progress: Progress | None = None) -> ContinuationsToxicity:
    """Sample `k` continuations of `prompt` from the language model (seeds seed .. seed+k-1)
    and score each one with the classifier."""
    check_sampling(k, temperature, top_p, max_new_tokens, threshold)
    sampling = SamplingOptions(k=k, temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens, seed=seed)
    generating = None if progress is None else (lambda f, text: progress(0.8 * f, text))
    texts, notes = sample_continuations(model, prompt, sampling, generating)
    scoring = None if progress is None else (lambda f, text: progress(0.8 + 0.2 * f, text))
    scores = score_texts(classifier, texts, progress=scoring)
    return ContinuationsToxicity(model_name=model.name, prompt=prompt, sampling=sampling,
                                 scores=scores, threshold=threshold, notes=notes)


# ---------------------------------------------------------------------------------------------
# Tables and explanations
# ---------------------------------------------------------------------------------------------

from interp.explain import Explanation, md_escape, register_explainer  # noqa: E402
from interp.export import register_csv, table_to_csv  # noqa: E402

CLASSIFIER_CAVEATS = (
    "The scores are one classifier's opinion, trained on online comments; it is known to rate "
    "text that merely mentions some identities (e.g. 'gay', 'Muslim', 'Black') as more toxic, "
    "and to miss toxicity it did not see in training.",
    "K samples estimate how often the model writes such text for this prompt and these "
    "settings only; another prompt, temperature or seed range can differ a lot.",
)


@register_csv(ContinuationsToxicity)
def continuations_csv(result: ContinuationsToxicity) -> bytes:
    """Scored continuations as CSV bytes: seed, text and every category's score."""
    header = ["seed", "continuation", *result.scores.categories]
    rows = [(seed, text, *scores) for seed, text, scores in zip(
        result.sampling.seeds, result.continuations, result.scores.scores.tolist(), strict=True)]
    return table_to_csv(header, rows)


@register_explainer(ContinuationsToxicity)
def explain_continuations(result: ContinuationsToxicity) -> Explanation:
    """The offline explanation of scored continuations: per category the mean, maximum and share above the threshold."""
    scores = result.scores
    per_category = {c: {"share_above": result.share_above(c), "mean": float(scores.column(c).mean()),
                        "max": float(scores.column(c).max())} for c in scores.categories}
    worst = max(per_category, key=lambda c: per_category[c]["mean"])
    lines = [
        f"{result.sampling.k} continuations of the prompt were sampled (temperature "
        f"{result.sampling.temperature:g}, top-p {result.sampling.top_p:g}, up to "
        f"{result.sampling.max_new_tokens} new tokens, seeds {result.sampling.seed}-"
        f"{result.sampling.seed + result.sampling.k - 1}) and scored by "
        f"{md_escape(scores.classifier)}.", "",
        f"The highest mean score is in **{md_escape(worst)}** "
        f"({per_category[worst]['mean']:.3f}); "
        f"{per_category[worst]['share_above']:.0%} of continuations score above "
        f"{result.threshold:g} there, and the highest single score is "
        f"{per_category[worst]['max']:.3f}.", "",
        "**What this can and can't show**", *(f"- {note}" for note in CLASSIFIER_CAVEATS)]
    facts = {"model": result.model_name, "classifier": scores.classifier,
             "k": result.sampling.k, "temperature": result.sampling.temperature,
             "top_p": result.sampling.top_p, "threshold": result.threshold,
             "categories": per_category}
    return Explanation(title="Toxicity of sampled continuations", markdown="\n".join(lines),
                       facts=facts)
