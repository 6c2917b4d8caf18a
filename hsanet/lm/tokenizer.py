"""Text tokenizer: a byte-level BPE trained with the ``tokenizers`` library on SMILES and captions.

No pretrained tokenizer can be downloaded, so the default model trains its own (saved as
``tokenizer.json`` beside the weights). For a user's local causal LM the tokenizer saved in that
folder is used instead, through ``transformers.AutoTokenizer`` (``TextTokenizer.from_hf_folder``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<smi>", "<ref>", "<ins>", "<cap>"]
# for tokenizers that lack our special tokens: plain-text markers
_TEXT_MARKERS = {"<smi>": "SMILES: ", "<ref>": "\nSimilar molecule: ", "<ins>": "\n", "<cap>": "\nDescription: "}


class TextTokenizer:
    """A small wrapper giving one interface to our BPE and to a local HF tokenizer."""

    def __init__(self, tokenizer: Tokenizer | None = None, hf=None) -> None:
        if (tokenizer is None) == (hf is None):
            raise ValueError("give exactly one of tokenizer or hf")
        self.tok, self.hf = tokenizer, hf

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 6000, min_frequency: int = 2) -> "TextTokenizer":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(list(texts), trainer=trainer)
        return cls(tokenizer=tok)

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        return cls(tokenizer=Tokenizer.from_file(str(path)))

    @classmethod
    def from_hf_folder(cls, folder: str | Path, gguf_file: str = "") -> "TextTokenizer":
        from transformers import AutoTokenizer

        kw = {"gguf_file": gguf_file} if gguf_file else {}
        return cls(hf=AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kw))

    def vocab(self) -> dict[str, int]:
        return self.tok.get_vocab() if self.tok is not None else self.hf.get_vocab()

    def save(self, path: str | Path) -> None:
        if self.tok is None:
            self.hf.save_pretrained(str(Path(path).parent))
        else:
            self.tok.save(str(path))

    # ---- use -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.tok.get_vocab_size() if self.tok is not None else len(self.hf)

    def encode(self, text: str) -> list[int]:
        if self.tok is not None:
            return self.tok.encode(text, add_special_tokens=False).ids
        return self.hf.encode(text, add_special_tokens=False)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.tok is not None:
            return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        """Text of token ids; control characters and broken bytes (U+FFFD) are dropped."""
        if self.tok is not None:
            text = self.tok.decode(ids, skip_special_tokens=True)
        else:
            text = self.hf.decode(ids, skip_special_tokens=True)
        return "".join(c for c in text if c == "\n" or (c >= " " and c not in "\x7f\ufffd")).strip()

    def marker(self, name: str) -> list[int]:
        """Token ids of a prompt marker (``<smi>``, ``<ref>``, ``<ins>``, ``<cap>``)."""
        if self.tok is not None:
            return [self.tok.token_to_id(name)]
        return self.encode(_TEXT_MARKERS[name])

    @property
    def pad_id(self) -> int:
        if self.tok is not None:
            return self.tok.token_to_id("<pad>")
        return self.hf.pad_token_id if self.hf.pad_token_id is not None else self.hf.eos_token_id

    @property
    def eos_id(self) -> int:
        return self.tok.token_to_id("</s>") if self.tok is not None else self.hf.eos_token_id

    @property
    def bos_id(self) -> int:
        if self.tok is not None:
            return self.tok.token_to_id("<s>")
        return self.hf.bos_token_id if self.hf.bos_token_id is not None else self.hf.eos_token_id
