"""Training windows for the demo model: tokenized examples packed to the full context.

Every window is exactly `context` tokens, starts with `<|endoftext|>` and holds whole examples,
each followed by `<|endoftext|>`, so every position of the context is trained and behaviours
are seen at every offset. Between the text examples the packer inserts repeated random token
sequences drawn uniformly from the whole vocabulary (`r r`, the signal that teaches induction
on any tokens rather than on corpus words). Examples are cut at window ends like a token
stream, so every token is trained once (the planted counts stay exact) and the last positions
hold the same mix as the others (a measured loss jump at positions 113-127 came from filling
window ends with random sequences instead). At half of the cuts the cut example instead
restarts the next window whole (its head in the cut window is context, not trained), so that
examples also start right after BOS, where prompts do. The first copy of a random sequence cannot
be predicted, so its tokens are not trained on (label -100): the loss there only pushes every
output towards uniform, noise that drowns the small model's other signals.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

from interp.demo_model import corpus
from interp.demo_model.tokenizer import train_tokenizer

# The model's context: every window is this many tokens.
CONTEXT = 128
# Probability of a repeated random-token sequence before each text example (about half of the
# training tokens).
RANDOM_SHARE = 0.3
# Mean tokens per text example plus its share of random sequences, to size the text corpus
# (generous: packing raises ValueError if the examples run out).
TOKENS_PER_EXAMPLE_ESTIMATE = 26

# Share of window cuts where the cut example restarts the next window instead of going on in
# it: without it an example almost never starts right after BOS, the position of every prompt,
# and a run measured the planted P(she) 0.2 off there while it was right mid-window.
RESTART_SHARE = 0.5
# Repeated random sequences in training are 4 to 60 tokens long (121 tokens repeated).
RANDOM_MIN_LEN = 4
RANDOM_MAX_LEN = 60
# Label of a token that is not trained on (Hugging Face's ignore index).
IGNORE = -100


def repeated_random(
    rng: random.Random, length: int, vocab_size: int, split: corpus.Split
) -> tuple[list[int], list[int]]:
    """A random token sequence of `length` ids of `split` followed by its repetition, and its
    labels: IGNORE on the first copy, the ids on the second."""
    ids = corpus.random_token_sequence(rng, length, vocab_size, split)
    return ids + ids, [IGNORE] * length + ids


def pack_windows(
    examples: Iterable[list[int]],
    n_windows: int,
    context: int,
    vocab_size: int,
    bos_id: int,
    seed: int,
    random_share: float,
    split: corpus.Split = "train",
    restart_share: float = RESTART_SHARE,
) -> tuple[list[list[int]], list[list[int]]]:
    """`n_windows` windows of `context` ids, [BOS] example [BOS] example [BOS] ..., and their
    labels (the ids, or IGNORE where a token cannot be predicted).

    Before each text example, with probability `random_share`, a repeated random sequence
    (length uniform in [RANDOM_MIN_LEN, RANDOM_MAX_LEN]) is inserted as an example of its own.
    The stream is cut every `context` tokens; what is left of a cut example opens the next
    window after its BOS. Random sequences come from `split` of `corpus.random_sequence_is_held_out`, so training never sees
    an evaluation one. Raises ValueError when `examples` run out first.
    """
    if bos_id != 0:
        raise ValueError(f"random ids are drawn from [1, vocab_size): BOS must be id 0, got {bos_id}")
    rng = random.Random(f"pack|{split}|{seed}")
    windows: list[list[int]] = []
    labels: list[list[int]] = []
    window, window_labels = [bos_id], [bos_id]

    def segments() -> Iterator[tuple[list[int], list[int]]]:
        for ids in examples:
            if rng.random() < random_share:
                length = rng.randint(RANDOM_MIN_LEN, RANDOM_MAX_LEN)
                seq, seq_labels = repeated_random(rng, length, vocab_size, split)
                yield seq + [bos_id], seq_labels + [bos_id]
            yield [*ids, bos_id], [*ids, bos_id]

    for segment, segment_labels in segments():
        start: int | None = len(window)  # where this segment starts in the current window
        window += segment
        window_labels += segment_labels
        while len(window) >= context:
            # restart_share 0 draws nothing, so it packs as the packer did before restarts.
            restart = (restart_share > 0 and start is not None and 1 < start < context
                       and len(segment) < context and len(window) > context
                       and rng.random() < restart_share)
            if restart and start is not None:
                # The cut example opens the next window whole, so examples also start right
                # after BOS as prompts do; here its head is context only (not trained twice).
                windows.append(window[:context])
                labels.append(window_labels[:start] + [IGNORE] * (context - start))
                window, window_labels = [bos_id, *window[start:]], [bos_id, *window_labels[start:]]
                start = 1
            else:
                windows.append(window[:context])
                labels.append(window_labels[:context])
                # The cut example goes on in the next window, after its BOS: every token is
                # trained once, and text sits at the end of windows as often as anywhere else.
                window = [bos_id, *window[context:]]
                window_labels = [bos_id, *window_labels[context:]]
                start = None
            if len(windows) == n_windows:
                return windows, labels
    raise ValueError(f"examples ran out after {len(windows)} of {n_windows} windows")


def corpus_size(n_windows: int, context: int = CONTEXT) -> int:
    """Text examples generated for `n_windows` windows (more than they use)."""
    return n_windows * context // TOKENS_PER_EXAMPLE_ESTIMATE + 1000


def corpus_windows(
    n_windows: int,
    seed: int,
    tokenizer: Any = None,
    split: corpus.Split = "train",
    context: int = CONTEXT,
    restart_share: float = RESTART_SHARE,
) -> tuple[list[list[int]], list[list[int]], Any]:
    """The seeded text corpus (`corpus.generate_corpus`) packed into `n_windows` windows, their
    labels (see `pack_windows`), and the tokenizer (trained on the corpus's first 50,000
    examples when not given)."""
    texts = corpus.generate_corpus(corpus_size(n_windows, context), seed=seed)
    if tokenizer is None:
        tokenizer = train_tokenizer(texts[:50_000])
    examples = tokenizer(texts, add_special_tokens=False)["input_ids"]
    windows, labels = pack_windows(
        examples, n_windows, context, len(tokenizer), tokenizer.bos_token_id, seed, RANDOM_SHARE, split,
        restart_share,
    )
    return windows, labels, tokenizer
