"""Byte-level BPE tokenizer for the demo model, trained on its synthetic corpus.

Built like GPT-2's: bytes mapped to printable characters, words carry their leading space
(" Paris" is one token), and `<|endoftext|>` is the only special token, used as BOS and EOS.
Because the corpus has a few hundred distinct words and the vocabulary has room for all of
them, every name, verb, city, occupation and induction word is a single token;
`check_single_tokens` verifies it.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

from interp.demo_model import corpus

BOS = "<|endoftext|>"
VOCAB_SIZE = 2048


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train the BPE on `texts` (plus every task word, so rare ones are covered) and wrap it."""
    words = [w for group in corpus.answer_words().values() for w in group]
    extra = [" ".join(words)] * 2  # min_frequency=2: every task word is seen at least twice
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        list(texts) + extra,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS],
        show_progress=False,
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=BOS)
    check_single_tokens(tokenizer)
    return tokenizer


def single_token_id(tokenizer: PreTrainedTokenizerFast, word: str) -> int:
    """Id of `word` with a leading space; ValueError if it is not exactly one token."""
    ids = tokenizer.encode(" " + word, add_special_tokens=False)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(f"{' ' + word!r} is {len(ids)} tokens {pieces}, expected one")
    return ids[0]


def check_single_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    """Raise ValueError listing every task word that is not a single leading-space token."""
    bad = []
    for group, words in corpus.answer_words().items():
        for word in words:
            try:
                single_token_id(tokenizer, word)
            except ValueError as err:
                bad.append(f"{group}: {err}")
    if bad:
        raise ValueError("words that are not single tokens:\n" + "\n".join(bad))


def encode_with_bos(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of `text` with `<|endoftext|>` prepended, exactly as in training."""
    return [tokenizer.bos_token_id, *tokenizer.encode(text, add_special_tokens=False)]
