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

Copy mechanism (our addition, ``copy_mechanism``; pointer-generator, See et al. 2017): a small
decoder trained from scratch on 3,000 captions learns to copy from the neighbour captions only
slowly, so the next-token distribution mixes the LM's softmax with an attention distribution over
the prompt's text tokens (SMILES and neighbour captions):

    p(w) = g_t softmax(W_o h_t)_w + (1 - g_t) sum_{j: x_j = w} softmax_j(q(h_t) . k(h_j) / sqrt(d)),
    g_t = sigmoid(w_g . h_t)

Generation with the copy mechanism is our own greedy loop over the KV cache (transformers'
``generate`` cannot mix in the copy distribution); beam search is available without it.
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

        return AutoModelForCausalLM.from_pretrained(config.lm_path, local_files_only=True, use_safetensors=True)
    common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                  pad_token_id=tokenizer.pad_id, tie_word_embeddings=True)
    if config.lm_type == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(n_positions=config.max_positions, n_embd=config.lm_dim, n_layer=config.lm_layers,
                         n_head=config.lm_heads, resid_pdrop=config.lm_dropout, embd_pdrop=config.lm_dropout,
                         attn_pdrop=config.lm_dropout,
                         # GPT-2's tanh-approximated GELU ("gelu_new") as PyTorch's one fused kernel:
                         # the same function, 7 element-wise passes fewer per MLP
                         activation_function="gelu_pytorch_tanh", **common)
        return GPT2LMHeadModel(cfg)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=config.lm_dim, intermediate_size=4 * config.lm_dim,
                      num_hidden_layers=config.lm_layers, num_attention_heads=config.lm_heads,
                      num_key_value_heads=config.lm_heads, max_position_embeddings=config.max_positions,
                      attention_dropout=config.lm_dropout, **common)
    return LlamaForCausalLM(cfg)


class CopyHead(nn.Module):
    """Pointer-generator head: copy attention over source positions and the generate/copy gate."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.gate = nn.Linear(width, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, 1.0)

    def attention(self, h: torch.Tensor, src_h: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """h (B, T, W), src_h (B, S, W), src_mask (B, S) -> copy weights (B, T, S)."""
        scores = self.q(h) @ self.k(src_h).transpose(1, 2) / src_h.shape[-1] ** 0.5
        return scores.float().masked_fill(~src_mask[:, None, :], float("-inf")).softmax(-1)


class CaptionDecoder(nn.Module):
    def __init__(self, config: HSANetConfig, tokenizer: TextTokenizer) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.lm = build_causal_lm(config, tokenizer)
        width = self.lm.get_input_embeddings().embedding_dim
        self.graph_proj = nn.Sequential(nn.Linear(config.proj_dim, width), nn.LayerNorm(width))
        self.copy = CopyHead(width) if config.copy_mechanism else None

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

    def prompt_ids_many(self, smiles: list[str], references: list[list[str]]) -> list[list[int]]:
        """``prompt_ids`` for many molecules, with one batched tokenizer call per kind of text."""
        tok, cfg = self.tokenizer, self.config
        refs = [list(r or [])[: cfg.retrieval_k] for r in references]
        smi = tok.encode_batch(list(smiles))
        flat = tok.encode_batch([r for rs in refs for r in rs]) if any(refs) else []
        tail = tok.marker("<ins>") + tok.encode(cfg.instruction) + tok.marker("<cap>")
        out, pos = [], 0
        for s_ids, rs in zip(smi, refs):
            ids = tok.marker("<smi>") + s_ids[: cfg.max_smiles_tokens]
            for r_ids in flat[pos:pos + len(rs)]:
                ids += tok.marker("<ref>") + r_ids[: cfg.max_ref_tokens]
            pos += len(rs)
            out.append(ids + tail)
        return out

    def target_ids_many(self, captions: list[str]) -> list[list[int]]:
        m, eos = self.config.max_caption_tokens, self.tokenizer.eos_id
        return [ids[:m] + [eos] for ids in self.tokenizer.encode_batch(list(captions))]

    def _embed(self, graph_tokens: torch.Tensor, ids: list[list[int]], left_pad: bool):
        """Input embeddings [graph ; text] per sample, padded into one batch.

        Built with one embedding lookup for the whole batch: the text ids are padded into a
        (B, T) tensor (``pad_id`` where a sample is shorter) and placed after the graph tokens,
        left- or right-aligned; padded positions are zero vectors with attention mask 0.
        """
        emb = self.lm.get_input_embeddings()
        g = self.graph_proj(graph_tokens)                                    # (B, G, width)
        device, b, n_graph = g.device, g.shape[0], g.shape[1]
        n_text = torch.tensor([len(x) for x in ids], device=device)
        t_max = int(n_text.max()) if len(ids) else 0
        text = torch.full((b, t_max), self.tokenizer.pad_id, dtype=torch.long, device=device)
        valid = torch.arange(t_max, device=device)[None, :] < n_text[:, None]
        text[valid] = torch.tensor([t for x in ids for t in x], dtype=torch.long, device=device)
        seq = torch.cat([g, emb(text) * valid.unsqueeze(-1).to(g.dtype)], dim=1)      # right-aligned
        mask = torch.cat([torch.ones(b, n_graph, dtype=torch.long, device=device), valid.long()], dim=1)
        lengths = [n_graph + len(x) for x in ids]
        if left_pad:                      # shift each row right by its padding: a gather per row
            total = n_graph + t_max
            shift = total - (n_graph + n_text)                                 # (B,)
            src = torch.arange(total, device=device)[None, :] - shift[:, None]
            keep = src >= 0
            src = src.clamp_min(0)
            seq = seq.gather(1, src.unsqueeze(-1).expand(-1, -1, seq.shape[-1])) * keep.unsqueeze(-1).to(seq.dtype)
            mask = mask.gather(1, src) * keep.long()
        return seq, mask, lengths

    # ---- training --------------------------------------------------------------------------
    def loss(self, graph_tokens: torch.Tensor, prompts: list[list[int]], targets: list[list[int]],
             per_sample: bool = False) -> torch.Tensor:
        """Mean cross-entropy of the caption tokens (logits computed only where a caption token is predicted).

        ``per_sample`` returns each sample's mean token negative log-likelihood (used for reranking).

        All of it is batched: the hidden states that predict caption tokens are gathered into a
        (B, T) grid (T the longest caption), and the copy attention is one (B, T, S) batched
        product against the prompt's text positions; only the token rows that exist are scored.
        """
        seqs = [p + t for p, t in zip(prompts, targets)]
        embeds, _, _ = self._embed(graph_tokens, seqs, left_pad=False)
        # right-padded and causal: a real position never attends to the padding after it, so no
        # padding mask is needed (the states of padded positions differ, and are never read); the
        # LM then takes the plain causal attention path
        hidden = self.lm.base_model(inputs_embeds=embeds).last_hidden_state
        device, n_graph = hidden.device, graph_tokens.shape[1]
        n_prompt = torch.tensor([len(p) for p in prompts], device=device)
        n_target = torch.tensor([len(t) for t in targets], device=device)
        t_max = int(n_target.max())
        steps = torch.arange(t_max, device=device)[None, :]
        valid = steps < n_target[:, None]                                    # (B, T)
        # the hidden state at position first-1+j predicts caption token j (first = G + len(prompt))
        cols = (n_graph + n_prompt[:, None] - 1 + steps).clamp(max=hidden.shape[1] - 1)
        h_grid = hidden.gather(1, cols.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))    # (B, T, W)
        labels_grid = torch.zeros(valid.shape, dtype=torch.long, device=device)
        labels_grid[valid] = torch.tensor([t for ts in targets for t in ts], dtype=torch.long, device=device)
        h = h_grid[valid]                                                    # (N, W), sample-major
        labels_t = labels_grid[valid]
        row_t = valid.nonzero()[:, 0]
        logits = self.lm.get_output_embeddings()(h)

        def reduce(nll: torch.Tensor) -> torch.Tensor:
            if not per_sample:
                return nll.mean()
            total = torch.zeros(len(prompts), device=nll.device).index_add(0, row_t, nll)
            return total / n_target.to(nll.dtype)

        if self.copy is None:
            return reduce(nn.functional.cross_entropy(logits.float(), labels_t, reduction="none"))
        # pointer-generator: mix in the copy distribution over the prompt's text tokens
        src_h, src_ids, src_mask = self._sources(hidden, prompts, [n_graph] * len(prompts))
        attn = self.copy.attention(h_grid, src_h, src_mask)                  # (B, T, S)
        p_copy = (attn * (src_ids[:, None, :] == labels_grid[:, :, None])).sum(-1)[valid]
        p_vocab = logits.float().softmax(-1).gather(1, labels_t[:, None]).squeeze(1)
        gate = torch.sigmoid(self.copy.gate(h).float()).squeeze(-1)
        return reduce(-torch.log(gate * p_vocab + (1 - gate) * p_copy + 1e-9))

    @staticmethod
    def _sources(hidden: torch.Tensor, prompts: list[list[int]], starts: list[int]):
        """Hidden states, ids and mask of each sample's prompt text tokens (the copy sources)."""
        device = hidden.device
        n = torch.tensor([len(p) for p in prompts], device=device)
        smax = int(n.max())
        src_mask = torch.arange(smax, device=device)[None, :] < n[:, None]              # (B, S)
        pos = (torch.tensor(starts, device=device)[:, None] + torch.arange(smax, device=device)[None, :])
        pos = pos.clamp(max=hidden.shape[1] - 1)
        src_h = hidden.gather(1, pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])) * src_mask.unsqueeze(-1).to(hidden.dtype)
        src_ids = torch.full((len(prompts), smax), -1, dtype=torch.long, device=device)
        src_ids[src_mask] = torch.tensor([t for p in prompts for t in p], dtype=torch.long, device=device)
        return src_h, src_ids, src_mask

    # ---- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, graph_tokens: torch.Tensor, prompts: list[list[int]], num_beams: int = 1,
                 max_new_tokens: int | None = None, no_repeat_ngram_size: int | None = None,
                 use_cache: bool = True, min_new_tokens: int | None = None) -> list[str]:
        """``min_new_tokens`` suppresses EOS until that many tokens exist (fixed-length benchmarks).

        ``no_repeat_ngram_size`` None takes the config's decoding default.
        """
        if no_repeat_ngram_size is None:
            no_repeat_ngram_size = self.config.no_repeat_ngram_size
        if self.copy is not None:
            return self._generate_copy(graph_tokens, prompts, max_new_tokens, no_repeat_ngram_size, min_new_tokens)
        embeds, mask, _ = self._embed(graph_tokens, prompts, left_pad=True)
        out = self.lm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens or self.config.max_caption_tokens,
            num_beams=num_beams, do_sample=False, eos_token_id=self.tokenizer.eos_id,
            pad_token_id=self.tokenizer.pad_id, no_repeat_ngram_size=no_repeat_ngram_size or None,
            use_cache=use_cache, early_stopping=True if num_beams > 1 else False, min_new_tokens=min_new_tokens,
        )
        return [self.tokenizer.decode([t for t in row.tolist() if t != self.tokenizer.pad_id]) for row in out]

    @torch.no_grad()
    def _generate_copy(self, graph_tokens, prompts, max_new_tokens=None, no_repeat_ngram_size=0,
                       min_new_tokens=None) -> list[str]:
        """Greedy decoding with the pointer-generator mixture, over the LM's KV cache."""
        tok = self.tokenizer
        max_new = max_new_tokens or self.config.max_caption_tokens
        embeds, mask, lengths = self._embed(graph_tokens, prompts, left_pad=True)
        total = embeds.shape[1]
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.lm.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
        g = graph_tokens.shape[1]
        starts = [total - n + g for n in lengths]
        src_h, src_ids, src_mask = self._sources(out.last_hidden_state, prompts, starts)
        src_k = self.copy.k(src_h)
        h = out.last_hidden_state[:, -1]
        past = out.past_key_values
        b = len(prompts)
        vocab = self.lm.get_output_embeddings().weight.shape[0]
        done = torch.zeros(b, dtype=torch.bool, device=h.device)
        generated: list[list[int]] = [[] for _ in range(b)]
        seen: list[dict] = [{} for _ in range(b)]
        pos = positions[:, -1]
        emb = self.lm.get_input_embeddings()
        safe_ids = src_ids.clamp_min(0)
        for step in range(max_new):
            p_vocab = self.lm.get_output_embeddings()(h).float().softmax(-1)
            scores = (self.copy.q(h).unsqueeze(1) @ src_k.transpose(1, 2)).squeeze(1) / src_h.shape[-1] ** 0.5
            attn = scores.float().masked_fill(~src_mask, float("-inf")).softmax(-1)
            p_copy = torch.zeros(b, vocab, device=h.device).scatter_add_(1, safe_ids, attn * src_mask)
            gate = torch.sigmoid(self.copy.gate(h).float())
            p = gate * p_vocab + (1 - gate) * p_copy
            if min_new_tokens and step < min_new_tokens:
                p[:, tok.eos_id] = 0
            if no_repeat_ngram_size:
                # n-gram blocking with a table (n-1)-gram -> next tokens seen, updated once per step
                n = no_repeat_ngram_size
                for i, seq in enumerate(generated):
                    if not done[i] and len(seq) >= n - 1:
                        banned = seen[i].get(tuple(seq[len(seq) - n + 1:]) if n > 1 else ())
                        if banned:
                            p[i, list(banned)] = 0
            nxt = p.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_id), nxt)
            for i in range(b):
                if not done[i]:
                    generated[i].append(int(nxt[i]))
                    seq = generated[i]
                    if no_repeat_ngram_size and len(seq) >= no_repeat_ngram_size:
                        n = no_repeat_ngram_size
                        seen[i].setdefault(tuple(seq[len(seq) - n:-1]), set()).add(seq[-1])
            done |= nxt == tok.eos_id
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=mask.device)], dim=1)
            pos = pos + 1
            out = self.lm.base_model(inputs_embeds=emb(nxt)[:, None], attention_mask=mask,
                                     position_ids=pos[:, None], past_key_values=past, use_cache=True)
            past = out.past_key_values
            h = out.last_hidden_state[:, -1]
        return [tok.decode([t for t in seq if t not in (tok.eos_id, tok.pad_id)]) for seq in generated]
