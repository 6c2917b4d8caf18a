"""HSA-Net, assembled in the order of the paper's Figure 1:

    molecule -> GIN levels H^(0..L) (encoder.py) -> HAP per level: gate + E_Attn | E_Mamba (hap.py)
             -> motif tokens (motif.py) -> SAF top-2 mixture of experts (saf.py)
             -> caption decoder (lm/decoder.py) and property heads (heads.py)

``HSANet.analyze`` runs it on molecules and returns a :class:`~hsanet.trace.Trace` with everything the
app shows; ``save_pretrained`` / ``from_pretrained`` store a checkpoint as safetensors + JSON.
``from_pretrained(defer_decoder=True)`` leaves the caption decoder (and the import of ``transformers``,
about 2 s) until the first caption: the app's first, structural pass needs no decoder.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch_geometric.utils import scatter

from .chem import Molecule, featurize, parse, slice_batch
from .config import ConfigError, HSANetConfig
from .encoder import GINEncoder
from .hap import HAP, serialize_batch
from .heads import PropertyHeads
from .lm import CaptionDecoder, TextTokenizer
from .motif import MotifBranch
from .projectors.scan import backend_for
from .saf import SAF, MLPFusion
from .trace import LevelTrace, Neighbour, SAFToken, Trace

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

    def set_inference_switches(self, retrieval_k: int | None = None, copy: bool | None = None) -> None:
        """Switch retrieval augmentation (``retrieval_k`` neighbour captions in the prompt; 0 = off)
        and the copy head (``copy=False``) for inference: an ablation of a model trained with them.
        ``None`` leaves a switch as it is; a copy head cannot be switched on when it was not trained."""
        if retrieval_k is not None:
            self.config.retrieval_k = int(retrieval_k)
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
               noise_keys: torch.Tensor | None = None) -> dict:
        """Graph side of HSA-Net for a PyG batch: levels, HAP routing, motif tokens, SAF fusion.

        In training the HAP gates' Gumbel noise and E_Mamba's random tie-breaks come from
        ``noise_keys`` (one int64 per molecule, ``hsanet.rng.molecule_keys``) when given, so a
        molecule's noise does not depend on its batch; else from ``generator`` / torch's RNG."""
        batch = batch.to(self.device)
        levels = self.encoder(batch.x, batch.edge_index, batch.edge_attr)
        ser = serialize_batch(batch, random_ties=self.training, generator=generator, keys=noise_keys)
        hap = self.hap(levels, batch.batch, ser, keep_experts=keep_experts, keys=noise_keys)
        motif = self.motif(levels[-1], batch.batch, batch.frag, batch.num_frags)
        k = self.config.num_queries
        z = torch.cat(hap["tokens"] + [motif], dim=1)                       # (B, (L+1)K + Km, d)
        src = torch.cat([torch.arange(self.config.num_levels, device=z.device).repeat_interleave(k),
                         torch.full((motif.shape[1],), self.config.num_levels, device=z.device)])
        fused = self.fusion(z + self.level_emb[src])
        return {"levels": levels, "serialization": ser, "hap": hap, "motif": motif, "tokens": z,
                "fusion": fused, "fused": fused["fused"], "embedding": fused["fused"].mean(1),
                "batch": batch}

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
    def references(self, smiles: list[str], exclude_self: bool = False) -> list[list[Neighbour]]:
        """Retrieved neighbour captions for the prompt (empty lists when retrieval is off)."""
        k = self.config.retrieval_k
        if self.retrieval is None or k == 0:
            return [[] for _ in smiles]
        hits = self.retrieval.query_many(smiles, k=k, exclude_self=exclude_self)
        return [[Neighbour(self.retrieval.smiles[i], self.retrieval.captions[i], float(s)) for i, s in row]
                for row in hits]

    def caption_loss(self, batch, smiles: list[str], captions: list[str], references: list[list[str]]):
        self.load_decoder()
        out = self.encode(batch)
        prompts = [self.decoder.prompt_ids(s, r) for s, r in zip(smiles, references)]
        targets = [self.decoder.target_ids(c) for c in captions]
        lm_loss = self.decoder.loss(out["fused"], prompts, targets)
        return lm_loss, out["fusion"]["balance_loss"]

    @torch.no_grad()
    def rerank(self, fused: torch.Tensor, prompts: list[list[int]], candidates: list[list[str]]) -> list[tuple[int, list[float]]]:
        """Score candidate captions per molecule by the model's mean token log-likelihood.

        Returns, per molecule, the index of the best candidate and all candidates' scores.
        """
        self.load_decoder()
        flat_g, flat_p, flat_t, owner = [], [], [], []
        for i, cands in enumerate(candidates):
            for c in cands:
                flat_g.append(i)
                flat_p.append(prompts[i])
                flat_t.append(self.decoder.target_ids(c))
                owner.append(i)
        nll = self.decoder.loss(fused[torch.tensor(flat_g, device=fused.device)], flat_p, flat_t, per_sample=True)
        out, pos = [], 0
        for cands in candidates:
            scores = [-float(v) for v in nll[pos:pos + len(cands)]]
            pos += len(cands)
            out.append((max(range(len(cands)), key=lambda j: scores[j]), scores))
        return out

    @torch.no_grad()
    def generate_captions(self, molecules: list[Molecule], num_beams: int = 1, max_new_tokens: int | None = None,
                          no_repeat_ngram_size: int | None = None, batch_size: int = 32, use_cache: bool = True,
                          min_new_tokens: int | None = None, rerank: bool | None = None) -> list[str]:
        """Captions for parsed molecules.

        ``rerank`` (default: the config's ``rerank``) adds a selection step: the generated caption
        and the retrieved neighbours' captions are scored by the model's likelihood and the best is
        returned (retrieval-augmented reranking; its choice was made on held-out data, see the card).
        """
        if rerank is None:
            rerank = self.config.rerank
        self.load_decoder()
        if self.decoder is None:
            raise RuntimeError("this model has no caption decoder (no tokenizer)")
        self.eval()
        out = []
        for i in range(0, len(molecules), batch_size):
            chunk = molecules[i:i + batch_size]
            enc = self.encode(featurize(chunk))
            refs = self.references([m.smiles for m in chunk])
            prompts = [self.decoder.prompt_ids(m.smiles, [n.caption for n in r]) for m, r in zip(chunk, refs)]
            gen = self.decoder.generate(enc["fused"], prompts, num_beams, max_new_tokens, no_repeat_ngram_size,
                                        use_cache=use_cache, min_new_tokens=min_new_tokens)
            if rerank and any(refs):
                cands = [[g] + [n.caption for n in r] for g, r in zip(gen, refs)]
                picks = self.rerank(enc["fused"], prompts, cands)
                gen = [c[j] for c, (j, _) in zip(cands, picks)]
            out += gen
        return out

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def analyze(self, inputs, caption: bool = True, properties: bool = True, num_beams: int = 1,
                max_new_tokens: int | None = None, metrics: bool = True, routing: str | None = None):
        """Run HSA-Net on one input (str or Molecule) or a list of them and return Trace(s).

        ``routing`` ("attn" or "mamba") forces HAP's choice for this call only, on these weights (the
        compare view uses it when no ablation checkpoint exists). Thread-safe: nothing is mutated.
        Raises :class:`~hsanet.chem.MoleculeError` for a bad input.
        """
        if routing not in (None, "attn", "mamba"):
            raise ValueError("routing must be None, 'attn' or 'mamba'")
        from .metrics.oversmoothing import all_metrics   # local import keeps scipy off the import path

        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        self.eval()
        t = {}
        t0 = time.perf_counter()
        mols = [x if isinstance(x, Molecule) else parse(x, self.config.max_atoms) for x in items]
        t["parse"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch = featurize(mols).to(self.device)
        t["featurize"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        levels = self.encoder(batch.x, batch.edge_index, batch.edge_attr)
        t["encoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ser = serialize_batch(batch)
        hap = self.hap(levels, batch.batch, ser, keep_experts=True, variant=routing)
        motif = self.motif(levels[-1], batch.batch, batch.frag, batch.num_frags)
        t["projectors_hap"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        k = self.config.num_queries
        z = torch.cat(hap["tokens"] + [motif], dim=1)
        src = torch.cat([torch.arange(self.config.num_levels, device=z.device).repeat_interleave(k),
                         torch.full((motif.shape[1],), self.config.num_levels, device=z.device)])
        fusion = self.fusion(z + self.level_emb[src])
        emb = fusion["fused"].mean(1)
        t["saf"] = time.perf_counter() - t0

        ptr = batch.ptr.tolist()
        level_np = [h.float().cpu().numpy() for h in levels]
        ei = batch.edge_index.cpu().numpy()
        t0 = time.perf_counter()
        level_metrics = []
        for g in range(len(mols)):
            a, b = ptr[g], ptr[g + 1]
            sel = (ei[0] >= a) & (ei[0] < b)
            local_ei = ei[:, sel] - a
            level_metrics.append([all_metrics(x[a:b], local_ei) if metrics else {} for x in level_np])
        t["metrics"] = time.perf_counter() - t0

        props = None
        if properties and self.heads is not None:
            props = self.heads.predict(self.property_features(levels, batch.batch, emb)).float().cpu().numpy()
        captions, neighbours = [None] * len(mols), [[] for _ in mols]
        caption_sources = [None] * len(mols)
        t0 = time.perf_counter()
        if caption:
            self.load_decoder()
        if caption and self.decoder is not None:
            neighbours = self.references([m.smiles for m in mols])
            prompts = [self.decoder.prompt_ids(m.smiles, [n.caption for n in r]) for m, r in zip(mols, neighbours)]
            captions = self.decoder.generate(fusion["fused"], prompts, num_beams, max_new_tokens)
            caption_sources = ["generated"] * len(mols)
            if self.config.rerank and any(neighbours):
                cands = [[c] + [n.caption for n in r] for c, r in zip(captions, neighbours)]
                picks = self.rerank(fusion["fused"], prompts, cands)
                captions = [c[j] for c, (j, _) in zip(cands, picks)]
                caption_sources = ["generated" if j == 0 else f"neighbour {j} (reranked)" for j, _ in picks]
        t["caption"] = time.perf_counter() - t0

        device = str(self.device) if self.device.type == "cpu" else torch.cuda.get_device_name(self.device)
        backend = backend_for(self.device)
        probs = hap["probs"].float().cpu().numpy()
        choice = hap["choice"].cpu().numpy()
        sources = self.token_sources
        traces = []
        for g, m in enumerate(mols):
            a, b = ptr[g], ptr[g + 1]
            lv = [LevelTrace(level=l, node_states=level_np[l][a:b], metrics=level_metrics[g][l],
                             p_attn=float(probs[g, l, 0]), p_mamba=float(probs[g, l, 1]),
                             choice="attn" if choice[g, l] == 0 else "mamba",
                             pooled=level_np[l][a:b].mean(0),
                             attn_tokens=hap["attn_tokens"][l][g].float().cpu().numpy(),
                             mamba_tokens=hap["mamba_tokens"][l][g].float().cpu().numpy(),
                             tokens=hap["tokens"][l][g].float().cpu().numpy())
                  for l in range(self.config.num_levels)]
            saf_tokens = []
            for i, s in enumerate(sources):
                if fusion["experts"] is None:
                    saf_tokens.append(SAFToken(i, s, [], [], []))
                else:
                    saf_tokens.append(SAFToken(i, s, fusion["experts"][g, i].tolist(),
                                               [float(w) for w in fusion["weights"][g, i]],
                                               [float(p) for p in fusion["probs"][g, i]]))
            prop = {}
            kinds = {}
            if props is not None:
                prop = {name: float(props[g, j]) for j, name in enumerate(self.heads.tasks)}
                kinds = dict(zip(self.heads.tasks, self.heads.kinds))
            warnings = list(m.warnings)
            if not self.meta.get("trained"):
                warnings.append("this model is untrained: its routing, tokens and caption are not meaningful")
            traces.append(Trace(
                smiles=m.smiles, input=m.input, num_atoms=m.num_atoms, num_fragments=m.num_fragments,
                atom_fragment=batch.frag[a:b].tolist(), mamba_order=ser.orders[g], levels=lv,
                saf_tokens=saf_tokens, num_experts=self.config.num_experts if fusion["experts"] is not None else 0,
                fused_tokens=fusion["fused"][g].float().cpu().numpy(), embedding=emb[g].float().cpu().numpy(),
                motif_tokens=motif[g].float().cpu().numpy(),
                variant=self.config.variant if routing is None else f"{self.config.variant} (routing forced: {routing})",
                trained=bool(self.meta.get("trained")), device=device, mamba_backend=backend,
                caption=captions[g], caption_source=caption_sources[g], properties=prop, property_kinds=kinds, neighbours=neighbours[g],
                timings_ms={k2: v * 1000.0 / len(mols) for k2, v in t.items()}, warnings=warnings))
        return traces[0] if single else traces

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
        (folder / "metadata.json").write_text(json.dumps(self.meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, device: str | torch.device | None = None,
                        allow_pickle: bool = False, defer_decoder: bool = False) -> "HSANet":
        """Load a checkpoint folder (config.json, model.safetensors, tokenizer, retrieval pool, metadata).

        ``defer_decoder``: keep the caption decoder's weights aside and build it on the first caption
        (:meth:`load_decoder`); ``decoder`` is None until then and ``has_decoder`` says whether there is one.
        """
        from .paths import DEFAULT_CHECKPOINT

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
            from .lm.decoder import resolve_lm_path

            tokenizer = TextTokenizer.from_hf_folder(resolve_lm_path(config.lm_path), config.lm_gguf_file)
        elif (folder / "tokenizer.json").exists():
            tokenizer = TextTokenizer.load(folder / "tokenizer.json")
        retrieval = None
        if (folder / "retrieval").is_dir():
            from .retrieval import FingerprintIndex

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
        model.eval()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return model.to(device)
