"""The toxicity classifier: Detoxify's loading paths, scoring, the input filter and sampling.

The classifier is a tiny random BERT written in Detoxify's checkpoint format
(`interp.random_models.save_random_detoxify`), built and scored by Detoxify's own code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from interp import toxicity
from interp.errors import ClassifierUnavailableError, InvalidOptionError, ModelUnavailableError
from interp.memory_budget import MemoryBudget
from interp.random_models import save_random_detoxify
from interp.settings import Settings

# A large initializer range, so that scores differ by text and category (with BERT's default
# 0.02 every text scores alike and a mix-up of texts or categories would not show).
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, vocab_size=300, max_position_embeddings=64,
                 initializer_range=0.5)
TEXTS = ("hello world", "you are a terrible person!", "x", "", "the cat sat on the mat today")


def save_tiny_detoxify(folder) -> tuple[str, str]:
    """A tiny Detoxify checkpoint; returns (checkpoint, config folder)."""
    return str(save_random_detoxify(folder, seed=1, **TINY_BERT)), str(folder)


@pytest.fixture(scope="session")
def tiny_detoxify(tmp_path_factory):
    return save_tiny_detoxify(tmp_path_factory.mktemp("tiny-detoxify"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_detoxify):
    checkpoint, folder = tiny_detoxify
    return toxicity.load_classifier(toxicity.ClassifierSource(checkpoint=checkpoint,
                                                              config_folder=folder))


def scores_by_hand(checkpoint: str, folder: str, texts) -> np.ndarray:
    """The BERT run directly with transformers: tokenizer with padding, the classifier's
    logits, a sigmoid per output (what Detoxify's `predict` documents)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    model = BertForSequenceClassification(BertConfig.from_pretrained(folder))
    model.load_state_dict(torch.load(checkpoint, weights_only=False)["state_dict"])
    model.eval()
    tokenizer = BertTokenizer.from_pretrained(folder)
    with torch.no_grad():
        batch = tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True)
        return torch.sigmoid(model(**batch).logits).double().numpy()


def test_scores_equal_running_the_bert_by_hand(tiny_detoxify, tiny_classifier):
    """Reference: the checkpoint's BERT run by hand (transformers, sigmoid of the logits), all
    texts in one batch; ours goes through Detoxify in batches of 2 (the last one a single text,
    which Detoxify squeezes)."""
    scores = toxicity.score_texts(tiny_classifier, TEXTS, batch_size=2)
    expected = scores_by_hand(*tiny_detoxify, TEXTS)
    assert scores.scores.shape == (len(TEXTS), 6)
    np.testing.assert_allclose(scores.scores, expected, atol=1e-5)
    assert np.ptp(expected, axis=0).min() > 0.1  # texts really differ, so a mix-up would show


def test_categories_carry_detoxify_names_in_checkpoint_order(tiny_classifier):
    """Reference: Detoxify's renaming of the Jigsaw classes (toxic -> toxicity, ...), by hand."""
    assert tiny_classifier.categories == ("toxicity", "severe_toxicity", "obscene", "threat",
                                          "insult", "identity_attack")


def test_share_above_and_highest_count_by_hand():
    """Reference: counting a 4-text table by hand."""
    scores = toxicity.ToxicityScores(texts=("a", "b", "c", "d"), categories=("toxicity",),
                                     scores=np.array([[0.1], [0.9], [0.6], [0.4]]),
                                     classifier="hand")
    assert scores.share_above("toxicity", 0.5) == 0.5
    assert scores.highest("toxicity", 2) == [(1, 0.9), (2, 0.6)]
    with pytest.raises(InvalidOptionError, match="toxicity"):
        scores.column("insult")


def test_the_input_filter_flags_a_prompt_rated_above_the_threshold(tiny_detoxify,
                                                                   tiny_classifier):
    """Reference: the by-hand scores of the prompt; the filter reports its highest category."""
    expected = scores_by_hand(*tiny_detoxify, ["some prompt"])[0]
    check = toxicity.check_prompt(tiny_classifier, "some prompt", threshold=0.5)
    assert check.category == tiny_classifier.categories[int(np.argmax(expected))]
    assert check.score == pytest.approx(float(expected.max()), abs=1e-5)
    assert check.flagged == (expected.max() > 0.5)
    assert not toxicity.check_prompt(tiny_classifier, "some prompt", threshold=0.9999).flagged


def test_no_checkpoint_offline_raises_the_exact_unavailable_message(monkeypatch, tmp_path):
    """Offline (HF_HUB_OFFLINE=1, set by conftest) with an empty torch hub cache, no local
    checkpoint: the typed error with the message the page shows, and no network call."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(ClassifierUnavailableError) as raised:
        toxicity.load_classifier(toxicity.ClassifierSource("unbiased"))
    assert str(raised.value) == toxicity.unavailable_message("unbiased")
    assert "WORKBENCH_DETOXIFY_CHECKPOINT" in str(raised.value)


def test_a_bad_local_checkpoint_says_which_setting_to_fix(tmp_path, tiny_detoxify):
    checkpoint, folder = tiny_detoxify
    with pytest.raises(ClassifierUnavailableError, match="WORKBENCH_DETOXIFY_CHECKPOINT"):
        toxicity.load_classifier(toxicity.ClassifierSource(checkpoint=str(tmp_path / "no.ckpt"),
                                                           config_folder=folder))
    with pytest.raises(ClassifierUnavailableError, match="WORKBENCH_DETOXIFY_CONFIG"):
        toxicity.load_classifier(toxicity.ClassifierSource(checkpoint=checkpoint))
    broken = tmp_path / "broken.ckpt"
    torch.save({"state_dict": {}}, broken)
    with pytest.raises(ClassifierUnavailableError, match="could not be loaded"):
        toxicity.load_classifier(toxicity.ClassifierSource(checkpoint=str(broken),
                                                           config_folder=folder))
    with pytest.raises(InvalidOptionError, match="original"):
        toxicity.load_classifier(toxicity.ClassifierSource("huge"))


def mapped_files(tensor: torch.Tensor) -> set[str]:
    """The files whose mappings (Linux's /proc/self/maps) hold the tensor's first byte."""
    address = tensor.data_ptr()
    files = set()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if start <= address < end and len(fields) == 6:
            files.add(fields[5].strip())
    return files


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc")
def test_the_weights_are_mapped_from_the_checkpoint_not_copied(tiny_detoxify, tiny_classifier):
    """Reference: the kernel's own list of this process's mappings. Detoxify's constructor
    read the checkpoint into anonymous memory (a BERT-base then held ~94 MB more)."""
    checkpoint, _ = tiny_detoxify
    model = tiny_classifier.detoxify.model
    for tensor in (model.bert.embeddings.word_embeddings.weight, model.classifier.weight):
        assert mapped_files(tensor) == {str(Path(checkpoint).resolve())}


def test_a_legacy_format_checkpoint_is_read_whole_and_scores_the_same(tmp_path, tiny_detoxify):
    """A checkpoint in torch's pre-zip format can't be mapped; it still loads. Reference: the
    by-hand scores of the same weights."""
    checkpoint, folder = tiny_detoxify
    legacy = tmp_path / "legacy.ckpt"
    torch.save(torch.load(checkpoint, weights_only=False), legacy,
               _use_new_zipfile_serialization=False)
    classifier = toxicity.load_classifier(toxicity.ClassifierSource(checkpoint=str(legacy),
                                                                    config_folder=folder))
    np.testing.assert_allclose(classifier.predict(TEXTS), scores_by_hand(*tiny_detoxify, TEXTS),
                               atol=1e-5)


def test_a_load_gives_freed_heap_memory_back(monkeypatch, tiny_detoxify):
    """What loading allocated and dropped is returned to the system at once, not only after
    the next analysis (`interp.heap.release_freed_memory`)."""
    import interp.heap

    calls = []
    monkeypatch.setattr(interp.heap, "release_freed_memory", lambda: calls.append(1) or True)
    checkpoint, folder = tiny_detoxify
    toxicity.load_classifier(toxicity.ClassifierSource(checkpoint=checkpoint,
                                                       config_folder=folder))
    assert calls == [1]


def test_the_settings_point_at_a_local_checkpoint():
    """The environment variables (or secrets) become the classifier's source."""
    settings = Settings.from_env(environ={"WORKBENCH_DETOXIFY_CHECKPOINT": "/m/d.ckpt",
                                          "WORKBENCH_DETOXIFY_CONFIG": " /m/cfg "})
    source = toxicity.ClassifierSource.from_settings(settings)
    assert (source.checkpoint, source.config_folder, source.is_local) == ("/m/d.ckpt",
                                                                          "/m/cfg", True)
    assert not toxicity.ClassifierSource.from_settings(Settings.from_env(environ={})).is_local


def test_the_classifier_counts_against_the_memory_budget(tiny_detoxify):
    """Reference: the bytes of the BERT's parameters and buffers summed by hand."""
    from transformers import BertConfig, BertForSequenceClassification

    checkpoint, folder = tiny_detoxify
    source = toxicity.ClassifierSource(checkpoint=checkpoint, config_folder=folder)
    budget = MemoryBudget(10**9)
    classifier = toxicity.load_classifier(source, budget=budget)
    reference = BertForSequenceClassification(BertConfig.from_pretrained(folder))
    expected = sum(t.numel() * t.element_size()
                   for t in [*reference.parameters(), *reference.buffers()])
    (held,) = budget.held()
    assert (held.kind, held.n_bytes) == ("toxicity classifier", expected)
    with pytest.raises(ModelUnavailableError, match="WORKBENCH_MEMORY_BUDGET_GB"):
        toxicity.load_classifier(source, budget=MemoryBudget(expected // 2))
    del classifier


@pytest.mark.slow
def test_continuations_are_reproducible_for_a_seed_and_scored(tiny_model, tiny_classifier):
    """Reference: `interp.generation.generate` called with seed + i for continuation i, and the
    classifier scoring those texts directly."""
    from interp.generation import generate

    first = toxicity.continuations_toxicity(tiny_model, tiny_classifier, "The cat", k=2,
                                            max_new_tokens=3, seed=7)
    again = toxicity.continuations_toxicity(tiny_model, tiny_classifier, "The cat", k=2,
                                            max_new_tokens=3, seed=7)
    other = toxicity.continuations_toxicity(tiny_model, tiny_classifier, "The cat", k=2,
                                            max_new_tokens=3, seed=8)
    assert first.continuations == again.continuations
    assert first.continuations != other.continuations
    expected = tuple("".join(t.text for t in generate(tiny_model, "The cat", max_new_tokens=3,
                                                      seed=7 + i)) for i in range(2))
    assert first.continuations == expected
    np.testing.assert_allclose(first.scores.scores, tiny_classifier.predict(expected))
    assert first.sampling.seeds == (7, 8)
    with pytest.raises(InvalidOptionError, match="top-p"):
        toxicity.continuations_toxicity(tiny_model, tiny_classifier, "x", top_p=0)
