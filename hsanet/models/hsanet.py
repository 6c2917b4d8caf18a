"""HSA-Net, assembled in the order of the paper's Figure 1:

    molecule -> GIN levels H^(0..L) (nn/gin.py) -> HAP per level: gate + E_Attn | E_Mamba (nn/hap.py)
             -> motif tokens (nn/motif.py) -> SAF top-2 mixture of experts (nn/saf.py)
             -> caption decoder (lm/decoder.py, Eq. 6) and property heads (nn/heads.py)

``encode`` is the graph side, ``forward`` adds the training loss, ``generate_captions`` captions
molecules (greedy or beams from transformers' ``generate``, copy head, reranking);
``save_pretrained`` / ``from_pretrained`` store a checkpoint as safetensors + JSON. ``analyze`` (the
trace the app shows) lives in :mod:`hsanet.inference.analyze`.
``from_pretrained(defer_decoder=True)`` leaves the caption decoder (and the import of ``transformers``,
about 2 s) until the first caption: the app's first, structural pass needs no decoder.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch_geometric.utils import scatter

from hsanet.config import ConfigError, HSANetConfig
from hsanet.featurizers import Molecule, featurize, slice_batch
from hsanet.featurizers.graph import serialize_batch
from hsanet.inference.trace import Neighbour
from hsanet.lm import CaptionDecoder, TextTokenizer
from hsanet.nn.gin import GINEncoder
from hsanet.nn.hap import HAP
from hsanet.nn.heads import PropertyHeads
from hsanet.nn.motif import MotifBranch
from hsanet.nn.saf import SAF, MLPFusion

EMBED_MIN_PER_THREAD = 32   # molecules per thread below which ``embed`` does not split a batch
_EMBED_POOLS: dict[int, ThreadPoolExecutor] = {}
_DECODER_LOCK = threading.Lock()    # builds of deferred caption decoders (a module global: models deep-copy)


def _embed_pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _EMBED_POOLS:
        _EMBED_POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="hsanet-embed")
    return _EMBED_POOLS[workers]


WEIGHTS = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _frozen_lm_weight(config: HSANetConfig, key: str) -> bool:
    """A weight of the pretrained LM that LoRA keeps frozen (loaded from ``lm_path``, never saved)."""
    return bool(config.lora_rank) and key.startswith("decoder.lm.") and "lora_" not in key


class _StageClock:
    """Seconds per stage into a dict (nothing when it is None): ``clock("name")`` closes a stage."""

    def __init__(self, timings: dict | None) -> None:
        self.timings, self.t0 = timings, time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = now - self.t0
            self.t0 = now


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, unsafe or inconsistent."""


class HSANet(nn.Module):
    def __init__(self, config: HSANetConfig | None = None, tokenizer: TextTokenizer | None = None,
                 retrieval=None, build_decoder: bool = True) -> None:
        super().__init__()
        self.config = config = config or HSANetConfig()
        d = config.proj_dim
        self.encoder = GINEncoder(config.num_layers, config.hidden, config.gnn_dropout)
        self.hap = HAP(config.num_levels, config.hidden, d, config.num_queries, config.num_heads, config.d_state,
                       config.d_conv, config.expand, config.resolved_dt_rank, config.max_graph_distance,
                       config.variant, config.gumbel_tau)
        self.motif = MotifBranch(config.hidden, d, config.num_motif_queries, config.num_heads)
        self.level_emb = nn.Parameter(torch.randn(config.num_levels + 1, d) * 0.02)   # source of each token
        self.fusion = MLPFusion(d) if config.variant == "nosaf" else SAF(d, config.num_experts, config.top_k,
                                                                          config.balance_coef)
        self.tokenizer = tokenizer
        self.decoder = None
        if tokenizer is not None:
            if config.vocab_size and config.lm_type != "local" and config.vocab_size != len(tokenizer):
                raise ConfigError(f"config vocab_size {config.vocab_size} != tokenizer size {len(tokenizer)}")
            config.vocab_size = len(tokenizer)
            if build_decoder:
                self.decoder = CaptionDecoder(config, tokenizer)
        self._pending_decoder: dict | None = None      # decoder weights waiting for load_decoder()
        self.heads = (PropertyHeads(self.property_dim, config.property_tasks, hidden=config.property_hidden)
                      if config.property_tasks else None)
        self.retrieval = retrieval
        self.domain = None          # applicability domain data (hsanet/inference/domain.py), when fitted
        self.meta: dict = {"trained": False}

    # ------------------------------------------------------------------------------------------
    @property
    def property_dim(self) -> int:
        c = self.config
        return 2 * c.num_levels * c.hidden if c.property_readout == "levels" else c.proj_dim

    def property_features(self, levels: list[torch.Tensor], batch_vec: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """What the property heads read (config ``property_readout``): the molecule embedding, or the
        mean- and max-pooled node states of every GIN level concatenated (jumping-knowledge read-out)."""
        if self.config.property_readout == "embedding":
            return embedding
        return torch.cat([scatter(h, batch_vec, dim=0, reduce=r) for r in ("mean", "max") for h in levels], dim=1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def decoder_pending(self) -> bool:
        """True while the caption decoder of ``from_pretrained(defer_decoder=True)`` is not built yet."""
        return self._pending_decoder is not None

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None or self.decoder_pending

    def load_decoder(self) -> None:
        """Build the caption decoder that ``from_pretrained(defer_decoder=True)`` left out and load its
        weights; nothing when there is none pending. Thread-safe; the caption methods call it."""
        if self._pending_decoder is None:
            return
        with _DECODER_LOCK:
            if self._pending_decoder is None:
                return
            decoder = CaptionDecoder(self.config, self.tokenizer)
            own = decoder.state_dict()
            state = {k: v.to(own[k].dtype) if k in own else v for k, v in self._pending_decoder.items()}
            missing, unexpected = decoder.load_state_dict(state, strict=False)
            missing = [m for m in missing if m != "lm.lm_head.weight"       # tied to the input embeddings
                       and not _frozen_lm_weight(self.config, "decoder." + m)]
            if missing or unexpected:
                raise CheckpointError(f"decoder weights do not match the config: missing {missing[:5]}, "
                                      f"unexpected {unexpected[:5]}")
            self.decoder = decoder.to(self.device).train(self.training)
            self._pending_decoder = None

    @property
    def token_sources(self) -> list[str]:
        k, km = self.config.num_queries, self.config.num_motif_queries
        return [f"level {l}" for l in range(self.config.num_levels) for _ in range(k)] + ["motif"] * km

    def set_variant(self, variant: str) -> None:
        """Switch HAP routing between full, attn and mamba (nosaf needs its own trained fusion)."""
        if variant == "nosaf" or (self.config.variant == "nosaf") != (variant == "nosaf"):
            raise ConfigError("the nosaf variant has a different fusion module: load a nosaf checkpoint")
        self.config.variant = variant
        self.hap.variant = variant

    def set_inference_switches(self, retrieval_k: int | None = None, copy: bool | None = None,
                               rerank_neighbours: int | None = None) -> None:
        """Switch retrieval augmentation (``retrieval_k`` neighbour captions in the prompt; 0 = off)
        and the copy head (``copy=False``) for inference: an ablation of a model trained with them.
        ``rerank_neighbours``: how many neighbours' captions reranking considers. ``None`` leaves a
        switch as it is; a copy head cannot be switched on when it was not trained."""
        if retrieval_k is not None:
            self.config.retrieval_k = int(retrieval_k)
        if rerank_neighbours is not None:
            self.config.rerank_neighbours = int(rerank_neighbours)
        if copy is False:
            self.load_decoder()
            if self.decoder is not None:
                self.decoder.copy = None

    @property
    def copy_active(self) -> bool:
        """Whether captions are generated with the copy head."""
        self.load_decoder()
        return bool(self.decoder is not None and self.decoder.copy is not None)

    def encode(self, batch, keep_experts: bool = False, generator: torch.Generator | None = None,
               noise_keys: torch.Tensor | None = None, routing: str | None = None,
               timings: dict | None = None) -> dict:
        """Graph side of HSA-Net for a PyG batch: GIN levels (Eq. 1), HAP routing and tokens per level
        (Eqs. 2-3), motif tokens, source embeddings and SAF fusion (Eqs. 4-5).

        In training the HAP gates' Gumbel noise and E_Mamba's random tie-breaks come from
        ``noise_keys`` (one int64 per molecule, ``hsanet.rng.molecule_keys``) when given, so a
        molecule's noise does not depend on its batch; else from ``generator`` / torch's RNG.
        ``routing`` ("attn" / "mamba") forces HAP's choice for this call; ``timings``, when given,
        receives the seconds of each stage (encoder, projectors_hap, saf)."""
        clock = _StageClock(timings)
        batch = batch.to(self.device)
        levels = self.encoder(batch.x, batch.edge_index, batch.edge_attr)
        clock("encoder")
        ser = serialize_batch(batch, random_ties=self.training, generator=generator, keys=noise_keys)
        hap = self.hap(levels, batch.batch, ser, keep_experts=keep_experts, keys=noise_keys, variant=routing)
        motif = self.motif(levels[-1], batch.batch, batch.frag, batch.num_frags)
        clock("projectors_hap")
        k = self.config.num_queries
        z = torch.cat(hap["tokens"] + [motif], dim=1)                       # (B, (L+1)K + Km, d)
        src = torch.cat([torch.arange(self.config.num_levels, device=z.device).repeat_interleave(k),
                         torch.full((motif.shape[1],), self.config.num_levels, device=z.device)])
        fused = self.fusion(z + self.level_emb[src])
        clock("saf")
        return {"levels": levels, "serialization": ser, "hap": hap, "motif": motif, "tokens": z,
                "fusion": fused, "fused": fused["fused"], "embedding": fused["fused"].mean(1),
                "batch": batch}

    def forward(self, batch, prompts: list[list[int]] | None = None, targets: list[list[int]] | None = None,
                **encode_kw) -> dict:
        """:meth:`encode`, and with ``prompts`` and ``targets`` (token ids, ``decoder.prompt_ids`` /
        ``target_ids``) the training objective: ``lm_loss`` (Eq. 6, with the copy head when trained)
        plus SAF's ``balance_loss`` gives ``loss``. Training (hsanet/training/module.py) calls this."""
        out = self.encode(batch, **encode_kw)
        if prompts is not None and targets is not None:
            self.load_decoder()
            out["lm_loss"] = self.decoder.loss(out["fused"], prompts, targets)
            out["balance_loss"] = out["fusion"]["balance_loss"]
            out["loss"] = out["lm_loss"] + out["balance_loss"]
        return out

    @torch.no_grad()
    def embed(self, batch) -> torch.Tensor:
        """Molecule embeddings (B, d): ``encode(batch)["embedding"]``, the mean of the SAF tokens.

        At inference on the CPU with ``n = torch.get_num_threads()`` > 1 and a large batch, the batch
        is cut into ``n`` contiguous parts encoded at once by ``n`` threads with one intra-op thread
        each (molecules are independent in eval mode, so the result is the same up to rounding).
        Much of ``encode`` is element-wise work on mid-sized tensors that torch's own intra-op
        threads share poorly; on the 2-core CPU this is 1.2-1.3x faster (docs/BENCHMARKS.md).
        """
        n = torch.get_num_threads()
        parts = min(n, batch.num_graphs // EMBED_MIN_PER_THREAD)
        # autocast and grad mode are per thread: under CPU autocast, stay in this thread
        if self.training or self.device.type != "cpu" or parts < 2 or torch.is_autocast_enabled("cpu"):
            return self.encode(batch)["embedding"]
        cuts = [batch.num_graphs * i // parts for i in range(parts + 1)]
        chunks = [slice_batch(batch, a, b) for a, b in zip(cuts[:-1], cuts[1:])]

        def one(chunk):
            torch.set_num_threads(1)
            with torch.no_grad():
                return self.encode(chunk)["embedding"]

        try:
            return torch.cat(list(_embed_pool(parts).map(one, chunks)))
        finally:
            torch.set_num_threads(n)          # the workers' setting also reached MKL's global one

    # ------------------------------------------------------------------------------------------
    def references(self, smiles: list[str], exclude_self: bool = False, k: int | None = None) -> list[list[Neighbour]]:
        """Retrieved neighbour captions, best first: the ``retrieval_k`` of the prompt, or ``k`` (empty
        lists when retrieval is off)."""
        k = self.config.retrieval_k if k is None else k
        if self.retrieval is None or k == 0 or self.config.retrieval_k == 0:
            return [[] for _ in smiles]
        hits = self.retrieval.query_many(smiles, k=k, exclude_self=exclude_self)
        return [[Neighbour(self.retrieval.smiles[i], self.retrieval.captions[i], float(s)) for i, s in row]
                for row in hits]

    def caption_loss(self, batch, smiles: list[str], captions: list[str], references: list[list[str]]):
        """(LM loss, SAF balance loss) of captions given as text, through :meth:`forward`."""
        self.load_decoder()
        prompts = [self.decoder.prompt_ids(s, r) for s, r in zip(smiles, references)]
        targets = [self.decoder.target_ids(c) for c in captions]
        out = self(batch, prompts=prompts, targets=targets)
        return out["lm_loss"], out["balance_loss"]

    @torch.no_grad()
    def rerank(self, fused: torch.Tensor, prompts: list[list[int]], candidates: list[list[str]],
               similarities: list[list[float | None]] | None = None) -> list[tuple[int, list[float]]]:
        """Score candidate captions per molecule and pick the best.

        The score is ``rerank_likelihood`` x the model's mean token log-likelihood of the candidate
        + ``rerank_consensus`` x its agreement with the retrieved neighbours' captions + ``rerank_similarity``
        x its own Tanimoto similarity (:mod:`hsanet.lm.consensus`; weights from the config).
        ``similarities[i][j]`` is candidate ``j``'s similarity to molecule ``i`` when it is a retrieved
        neighbour's caption, ``None`` when it is not (the generated caption): such a candidate does not
        vote, and its own similarity is 0 (no retrieved molecule stands behind it; chosen on validation
        against giving it the top neighbour's). Without ``similarities`` only the log-likelihood counts.

        Returns, per molecule, the index of the best candidate (ties: the first) and all candidates' scores.
        """
        cfg = self.config
        use_ll = cfg.rerank_likelihood > 0 or similarities is None
        loglik = [[0.0] * len(c) for c in candidates]
        if use_ll:
            self.load_decoder()
            flat_g, flat_p, flat_t = [], [], []
            for i, cands in enumerate(candidates):
                for c in cands:
                    flat_g.append(i)
                    flat_p.append(prompts[i])
                    flat_t.append(self.decoder.target_ids(c))
            nll = self.decoder.loss(fused[torch.tensor(flat_g, device=fused.device)], flat_p, flat_t, per_sample=True)
            pos = 0
            for i, cands in enumerate(candidates):
                loglik[i] = [-float(v) for v in nll[pos:pos + len(cands)]]
                pos += len(cands)
        out = []
        for i, cands in enumerate(candidates):
            if similarities is None:
                scores = loglik[i]
            else:
                from hsanet.lm.consensus import combined_scores, consensus, own_voters

                sims = similarities[i]
                voters = [c for c, s in zip(cands, sims) if s is not None]
                weights = [s for s in sims if s is not None]
                # a neighbour's caption is that voter; another candidate is the voter it copies, if any
                own, n = [], 0
                for c, s in zip(cands, sims):
                    own.append(n if s is not None else own_voters([c], voters)[0])
                    n += s is not None
                agree = (consensus(cands, voters, weights, own) if cfg.rerank_consensus > 0
                         else [0.0] * len(cands))
                own = [0.0 if s is None else s for s in sims]
                scores = [float(v) for v in combined_scores(loglik[i], agree, own, cfg.rerank_likelihood if use_ll else 0.0,
                                                            cfg.rerank_consensus, cfg.rerank_similarity)]
            out.append((max(range(len(cands)), key=lambda j: scores[j]), scores))
        return out

    @torch.no_grad()
    def decode(self, fused: torch.Tensor, molecules: list[Molecule], num_beams: int = 1,
               max_new_tokens: int | None = None, no_repeat_ngram_size: int | None = None, use_cache: bool = True,
               min_new_tokens: int | None = None, rerank: bool | None = None) -> tuple[list[str], list[str], list]:
        """Captions of encoded molecules (``fused``: their SAF tokens): (captions, where each comes from,
        the prompt's neighbours).

        The prompt holds the ``retrieval_k`` nearest training captions; the decoder writes a caption
        (transformers' ``generate``: greedy or beams, with the copy head's mixture). With ``rerank``
        (default: the config's) the generated caption and the captions of the ``rerank_neighbours``
        nearest training molecules (default: those in the prompt) are scored (:meth:`rerank`: the model's
        mean token log-likelihood, with the config's weights also their consensus with the neighbours'
        captions and their similarity; chosen on validation data, see the model card) and the best is
        returned; a tie goes to the generated caption.
        """
        self.load_decoder()
        if self.decoder is None:
            raise RuntimeError("this model has no caption decoder (no tokenizer)")
        rerank = self.config.rerank if rerank is None else rerank
        k = self.config.retrieval_k
        pool = max(k, self.config.rerank_neighbours) if rerank else k
        hits = self.references([m.smiles for m in molecules], k=pool)
        refs = [h[:k] for h in hits]
        prompts = [self.decoder.prompt_ids(m.smiles, [n.caption for n in r]) for m, r in zip(molecules, refs)]
        captions = self.decoder.generate(fused, prompts, num_beams, max_new_tokens, no_repeat_ngram_size,
                                         use_cache=use_cache, min_new_tokens=min_new_tokens)
        sources = ["generated"] * len(molecules)
        if rerank and any(hits):
            cands = [[c] + [n.caption for n in h] for c, h in zip(captions, hits)]
            sims = [[None] + [n.similarity for n in h] for h in hits]
            picks = self.rerank(fused, prompts, cands, sims)
            captions = [c[j] for c, (j, _) in zip(cands, picks)]
            sources = ["generated" if j == 0 else f"neighbour {j} (reranked)" for j, _ in picks]
        return captions, sources, refs

    @torch.no_grad()
    def generate_captions(self, molecules: list[Molecule], num_beams: int = 1, max_new_tokens: int | None = None,
                          no_repeat_ngram_size: int | None = None, batch_size: int = 32, use_cache: bool = True,
                          min_new_tokens: int | None = None, rerank: bool | None = None) -> list[str]:
        """Captions for parsed molecules, in batches (:meth:`decode`)."""
        self.eval()
        out = []
        for i in range(0, len(molecules), batch_size):
            chunk = molecules[i:i + batch_size]
            enc = self.encode(featurize(chunk))
            out += self.decode(enc["fused"], chunk, num_beams, max_new_tokens, no_repeat_ngram_size, use_cache,
                               min_new_tokens, rerank)[0]
        return out

    # ------------------------------------------------------------------------------------------
    def analyze(self, inputs, caption: bool = True, properties: bool = True, num_beams: int = 1,
                max_new_tokens: int | None = None, metrics: bool = True, routing: str | None = None):
        """Run HSA-Net on one input (str or Molecule) or a list of them and return Trace(s): see
        :func:`hsanet.inference.analyze.analyze`."""
        from hsanet.inference.analyze import analyze

        return analyze(self, inputs, caption=caption, properties=properties, num_beams=num_beams,
                       max_new_tokens=max_new_tokens, metrics=metrics, routing=routing)

    # ------------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, fp16: bool = False) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder / "config.json")
        # a frozen pretrained LM (LoRA) is not stored: it is loaded from config.lm_path
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                 if not _frozen_lm_weight(self.config, k)}
        if fp16:
            # property heads stay fp32: they are tiny, and linear heads hold standardization folded in
            state = {k: v.half() if v.is_floating_point() and not k.startswith("heads.") else v for k, v in state.items()}
        # tied weights (LM input/output embeddings) are stored once
        seen, unique = {}, {}
        for k, v in state.items():
            key = (v.data_ptr(), v.shape, v.dtype) if v.numel() else None
            if key is not None and key in seen and not fp16:
                continue
            seen[key] = k
            unique[k] = v
        save_file(unique, str(folder / WEIGHTS), metadata={"format": "pt"})
        if self.tokenizer is not None:
            self.tokenizer.save(folder / "tokenizer.json")
        if self.retrieval is not None:
            self.retrieval.save(folder / "retrieval")
        if self.domain is not None:
            self.domain.save(folder / "domain")
        elif (folder / "domain").is_dir():
            import shutil

            shutil.rmtree(folder / "domain")          # a stale one would describe other heads
        (folder / "metadata.json").write_text(json.dumps(self.meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, device: str | torch.device | None = None,
                        allow_pickle: bool = False, defer_decoder: bool = False) -> "HSANet":
        """Load a checkpoint folder (config.json, model.safetensors, tokenizer, retrieval pool, metadata).

        ``defer_decoder``: keep the caption decoder's weights aside and build it on the first caption
        (:meth:`load_decoder`); ``decoder`` is None until then and ``has_decoder`` says whether there is one.
        """
        from hsanet.paths import DEFAULT_CHECKPOINT

        folder = Path(folder) if folder else DEFAULT_CHECKPOINT
        if not folder.is_dir():
            raise CheckpointError(f"checkpoint folder not found: {folder}")
        pickled = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickled and not allow_pickle:
            raise CheckpointError(f"{folder} contains pickled files ({', '.join(pickled)}); HSA-Net loads only "
                                  "safetensors and JSON. Pass allow_pickle=True only for files you trust.")
        if not (folder / "config.json").exists() or not (folder / WEIGHTS).exists():
            raise CheckpointError(f"{folder} needs config.json and {WEIGHTS}")
        config = HSANetConfig.load(folder / "config.json")
        tokenizer = None
        if config.lm_type == "local":
            from hsanet.lm.decoder import resolve_lm_path

            tokenizer = TextTokenizer.from_hf_folder(resolve_lm_path(config.lm_path), config.lm_gguf_file)
        elif (folder / "tokenizer.json").exists():
            tokenizer = TextTokenizer.load(folder / "tokenizer.json")
        retrieval = None
        if (folder / "retrieval").is_dir():
            from hsanet.retrieval import FingerprintIndex

            retrieval = FingerprintIndex.load(folder / "retrieval")
        defer = defer_decoder and tokenizer is not None
        model = cls(config, tokenizer, retrieval, build_decoder=not defer)
        try:
            state = load_file(str(folder / WEIGHTS))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
            raise CheckpointError(f"checkpoint weights {folder / WEIGHTS} cannot be read (damaged or truncated?): {exc}") from exc
        if defer:
            model._pending_decoder = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
            state = {k: v for k, v in state.items() if not k.startswith("decoder.")}
        own = model.state_dict()
        state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = {"decoder.lm.lm_head.weight"}
        missing = [m for m in missing if m not in tied and not _frozen_lm_weight(config, m)]
        if missing or unexpected:
            raise CheckpointError(f"weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if (folder / "metadata.json").exists():
            model.meta = json.loads((folder / "metadata.json").read_text())
        if (folder / "domain" / "domain.json").exists():
            from hsanet.inference.domain import Domain

            model.domain = Domain.load(folder / "domain")
        model.eval()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return model.to(device)
