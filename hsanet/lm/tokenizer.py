"""Text tokenizer of the caption decoder (Sec. 3.4): one interface, transformers'
``PreTrainedTokenizerFast``, over our byte-level BPE or a local causal LM's own tokenizer.

No pretrained tokenizer can be downloaded, so the default model trains its own BPE with the
``tokenizers`` library on SMILES and captions (saved as ``tokenizer.json`` beside the weights) and
wraps it with ``PreTrainedTokenizerFast(tokenizer_object=...)``. For a user's local causal LM the
tokenizer saved in that folder is used instead, through ``transformers.AutoTokenizer``
(``TextTokenizer.from_hf_folder``). The wrapper is built on first use: importing ``transformers``
takes about 2 s, and the app's first, structural pass needs no tokens (docs/BENCHMARKS.md fix 13).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<smi>", "<ref>", "<ins>", "<cap>"]
MARKERS = ("<smi>", "<ref>", "<ins>", "<cap>")
# for tokenizers that lack our special tokens: plain-text markers
_TEXT_MARKERS = {"<smi>": "SMILES: ", "<ref>": "\nSimilar molecule: ", "<ins>": "\n", "<cap>": "\nDescription: "}


class TextTokenizer:
    """Token ids for prompts and captions through a ``PreTrainedTokenizerFast`` (``.hf``)."""

    def __init__(self, tokenizer: Tokenizer | None = None, hf=None) -> None:
        if (tokenizer is None) == (hf is None):
            raise ValueError("give exactly one of tokenizer (our BPE) or hf (a transformers tokenizer)")
        self.raw, self._hf = tokenizer, hf

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

    @property
    def hf(self):
        """The ``PreTrainedTokenizerFast`` every method uses (built from our BPE on first use)."""
        if self._hf is None:
            from transformers import PreTrainedTokenizerFast

            self._hf = PreTrainedTokenizerFast(tokenizer_object=self.raw, bos_token="<s>", eos_token="</s>",
                                               pad_token="<pad>", unk_token="<unk>",
                                               additional_special_tokens=list(MARKERS),
                                               clean_up_tokenization_spaces=False)
        return self._hf

    def vocab(self) -> dict[str, int]:
        return self.raw.get_vocab() if self.raw is not None else self.hf.get_vocab()

    def save(self, path: str | Path) -> None:
        if self.raw is None:
            self.hf.save_pretrained(str(Path(path).parent))
        else:
            self.raw.save(str(path))

    # ---- use -------------------------------------------------------------------------------
    def __len__(self) -> int:
        # our BPE's size without building the wrapper (HSANet reads it when a checkpoint loads)
        return self.raw.get_vocab_size() if self._hf is None else len(self._hf)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.hf(list(texts), add_special_tokens=False)["input_ids"] if texts else []

    def decode(self, ids: list[int]) -> str:
        """Text of token ids; control characters and broken bytes (U+FFFD) are dropped."""
        text = self.hf.decode(ids, skip_special_tokens=True)
        return "".join(c for c in text if c == "\n" or (c >= " " and c not in "\x7f\ufffd")).strip()

    def marker(self, name: str) -> list[int]:
        """Token ids of a prompt marker (``<smi>``, ``<ref>``, ``<ins>``, ``<cap>``): our BPE's own
        special token, or plain text for a tokenizer that lacks them."""
        own = self.hf.convert_tokens_to_ids(name)
        if own is not None and own != self.hf.unk_token_id:
            return [own]
        return self.encode(_TEXT_MARKERS[name])

    @property
    def pad_id(self) -> int:
        return self.hf.pad_token_id if self.hf.pad_token_id is not None else self.hf.eos_token_id

    @property
    def eos_id(self) -> int:
        return self.hf.eos_token_id

    @property
    def bos_id(self) -> int:
        return self.hf.bos_token_id if self.hf.bos_token_id is not None else self.hf.eos_token_id
