"""The caption decoder (Sec. 3.4, Eq. 6): T_out = LLM(T_SMILES, Y, T_Instruct).

A causal language model reads, as input embeddings,

    [ graph tokens Y (SAF output, projected to the LM width) ;
      <smi> SMILES ; (<ref> neighbour caption) x k ; <ins> instruction ; <cap> ]

and writes the caption. The paper fine-tunes Galactica-1.3B or LLaMA-2-7B with LoRA; nothing can be
downloaded here, so the default is a small GPT-2 (or Llama) built from a transformers config and
trained from scratch, with transformers' ``generate()`` for greedy and beam search with a KV cache.
A causal LM in a local folder (``lm_type="local"``) can be used instead, optionally with LoRA.

Retrieval augmentation (our addition, switchable with ``retrieval_k``; MolReGPT-style): the prompt
also holds the captions of the k most similar training molecules by Morgan fingerprint.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import HSANetConfig
from .tokenizer import TextTokenizer


def build_causal_lm(config: HSANetConfig, tokenizer: TextTokenizer) -> nn.Module:
    """A transformers causal LM built from a config (nothing downloaded) or loaded from a local folder."""
    if config.lm_type == "local":
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(config.lm_path, local_files_only=True)
    common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                  pad_token_id=tokenizer.pad_id, tie_word_embeddings=True)
    if config.lm_type == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(n_positions=config.max_positions, n_embd=config.lm_dim, n_layer=config.lm_layers,
                         n_head=config.lm_heads, resid_pdrop=config.lm_dropout, embd_pdrop=config.lm_dropout,
                         attn_pdrop=config.lm_dropout, **common)
        return GPT2LMHeadModel(cfg)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=config.lm_dim, intermediate_size=4 * config.lm_dim,
                      num_hidden_layers=config.lm_layers, num_attention_heads=config.lm_heads,
                      num_key_value_heads=config.lm_heads, max_position_embeddings=config.max_positions,
                      attention_dropout=config.lm_dropout, **common)
    return LlamaForCausalLM(cfg)


class CaptionDecoder(nn.Module):
    def __init__(self, config: HSANetConfig, tokenizer: TextTokenizer) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.lm = build_causal_lm(config, tokenizer)
        width = self.lm.get_input_embeddings().embedding_dim
        self.graph_proj = nn.Sequential(nn.Linear(config.proj_dim, width), nn.LayerNorm(width))

    # ---- prompts ---------------------------------------------------------------------------
    def prompt_ids(self, smiles: str, references: list[str] | None = None) -> list[int]:
        tok, cfg = self.tokenizer, self.config
        ids = tok.marker("<smi>") + tok.encode(smiles)[: cfg.max_smiles_tokens]
        for ref in (references or [])[: cfg.retrieval_k]:
            ids += tok.marker("<ref>") + tok.encode(ref)[: cfg.max_ref_tokens]
        ids += tok.marker("<ins>") + tok.encode(cfg.instruction) + tok.marker("<cap>")
        return ids

    def target_ids(self, caption: str) -> list[int]:
        return self.tokenizer.encode(caption)[: self.config.max_caption_tokens] + [self.tokenizer.eos_id]

    def _embed(self, graph_tokens: torch.Tensor, ids: list[list[int]], left_pad: bool):
        """Input embeddings [graph ; text] per sample, padded into one batch."""
        emb = self.lm.get_input_embeddings()
        g = self.graph_proj(graph_tokens)                                    # (B, T, width)
        device = g.device
        lengths = [g.shape[1] + len(x) for x in ids]
        total = max(lengths)
        out = g.new_zeros(len(ids), total, g.shape[-1])
        mask = torch.zeros(len(ids), total, dtype=torch.long, device=device)
        for i, x in enumerate(ids):
            seq = torch.cat([g[i], emb(torch.tensor(x, dtype=torch.long, device=device))], dim=0)
            start = total - lengths[i] if left_pad else 0
            out[i, start:start + lengths[i]] = seq
            mask[i, start:start + lengths[i]] = 1
        return out, mask, lengths

    # ---- training --------------------------------------------------------------------------
    def loss(self, graph_tokens: torch.Tensor, prompts: list[list[int]], targets: list[list[int]]) -> torch.Tensor:
        """Mean cross-entropy of the caption tokens (logits computed only where a caption token is predicted)."""
        seqs = [p + t for p, t in zip(prompts, targets)]
        embeds, mask, lengths = self._embed(graph_tokens, seqs, left_pad=False)
        hidden = self.lm.base_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        rows, cols, labels = [], [], []
        for i, (p, t) in enumerate(zip(prompts, targets)):
            first = graph_tokens.shape[1] + len(p)          # index of the first caption token
            rows += [i] * len(t)
            cols += list(range(first - 1, first - 1 + len(t)))
            labels += t
        h = hidden[torch.tensor(rows, device=hidden.device), torch.tensor(cols, device=hidden.device)]
        logits = self.lm.get_output_embeddings()(h)
        return nn.functional.cross_entropy(logits.float(), torch.tensor(labels, device=hidden.device))

    # ---- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, graph_tokens: torch.Tensor, prompts: list[list[int]], num_beams: int = 1,
                 max_new_tokens: int | None = None, no_repeat_ngram_size: int = 0,
                 use_cache: bool = True) -> list[str]:
        embeds, mask, _ = self._embed(graph_tokens, prompts, left_pad=True)
        out = self.lm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens or self.config.max_caption_tokens,
            num_beams=num_beams, do_sample=False, eos_token_id=self.tokenizer.eos_id,
            pad_token_id=self.tokenizer.pad_id, no_repeat_ngram_size=no_repeat_ngram_size or None,
            use_cache=use_cache, early_stopping=True if num_beams > 1 else False,
        )
        return [self.tokenizer.decode([t for t in row.tolist() if t != self.tokenizer.pad_id]) for row in out]
