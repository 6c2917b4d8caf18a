"""Analysis of molecules for the app and ``hsanet analyze``: one :class:`~hsanet.inference.trace.Trace`
per molecule with everything the views show (the model's read-out, not a part of the paper's model).

It runs :meth:`HSANet.encode` with both experts kept, times every stage (parse, featurize, encoder,
projectors + HAP, SAF, over-smoothing metrics, caption), computes the over-smoothing metrics of every
GIN level per molecule (hsanet/metrics/oversmoothing.py), the property heads, and the caption
(greedy or beams, with reranking against the retrieved neighbours' captions when the model has it).
"""
from __future__ import annotations

import time

import torch

from hsanet.config import ROUTINGS
from hsanet.featurizers import Molecule, featurize, parse
from hsanet.inference.trace import LevelTrace, SAFToken, Trace
from hsanet.nn.selective_scan import backend_for


@torch.no_grad()
def analyze(model, inputs, caption: bool = True, properties: bool = True, num_beams: int = 1,
            max_new_tokens: int | None = None, metrics: bool = True, routing: str | None = None):
    """Run HSA-Net (``model``) on one input (str or Molecule) or a list of them and return Trace(s).

    ``routing`` ("attn" or "mamba") forces HAP's choice for this call only, on these weights (the
    compare view uses it when no ablation checkpoint exists). Thread-safe: nothing is mutated.
    Raises :class:`~hsanet.featurizers.MoleculeError` for a bad input.
    """
    if routing is not None and routing not in ROUTINGS:
        raise ValueError(f"routing must be None or one of {ROUTINGS}")
    from hsanet.metrics.oversmoothing import all_metrics   # local import keeps scipy off the import path

    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    model.eval()
    t = {}
    t0 = time.perf_counter()
    mols = [x if isinstance(x, Molecule) else parse(x, model.config.max_atoms) for x in items]
    t["parse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = featurize(mols).to(model.device)
    t["featurize"] = time.perf_counter() - t0
    enc = model.encode(batch, keep_experts=True, routing=routing, timings=t)
    levels, ser, hap, motif, fusion = enc["levels"], enc["serialization"], enc["hap"], enc["motif"], enc["fusion"]
    emb = enc["embedding"]

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

    props, domain_sims = None, {}
    if properties and model.heads is not None:
        props = model.heads.predict(model.property_features(levels, batch.batch, emb)).float().cpu().numpy()
        if model.domain is not None:
            domain_sims = model.domain.similarities([m.smiles for m in mols])
    captions, neighbours = [None] * len(mols), [[] for _ in mols]
    caption_sources = [None] * len(mols)
    t0 = time.perf_counter()
    if caption:
        model.load_decoder()
    if caption and model.decoder is not None:
        captions, caption_sources, neighbours = model.decode(fusion["fused"], mols, num_beams, max_new_tokens)
    t["caption"] = time.perf_counter() - t0

    device = str(model.device) if model.device.type == "cpu" else torch.cuda.get_device_name(model.device)
    backend = backend_for(model.device)
    probs = hap["probs"].float().cpu().numpy()
    choice = hap["choice"].cpu().numpy()
    sources = model.token_sources
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
              for l in range(model.config.num_levels)]
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
        dom, dom_t = {}, {}
        if props is not None:
            prop = {name: float(props[g, j]) for j, name in enumerate(model.heads.tasks)}
            kinds = dict(zip(model.heads.tasks, model.heads.kinds))
            for name in prop:
                dataset = name.split("/")[0]
                if dataset in domain_sims:
                    dom[name] = float(domain_sims[dataset][g])
                    dom_t[name] = model.domain.thresholds[dataset]
        warnings = list(m.warnings)
        if not model.meta.get("trained"):
            warnings.append("this model is untrained: its routing, tokens and caption are not meaningful")
        traces.append(Trace(
            smiles=m.smiles, input=m.input, num_atoms=m.num_atoms, num_fragments=m.num_fragments,
            atom_fragment=batch.frag[a:b].tolist(), mamba_order=ser.orders[g], levels=lv,
            saf_tokens=saf_tokens, num_experts=model.config.num_experts if fusion["experts"] is not None else 0,
            fused_tokens=fusion["fused"][g].float().cpu().numpy(), embedding=emb[g].float().cpu().numpy(),
            motif_tokens=motif[g].float().cpu().numpy(),
            variant=model.config.variant if routing is None else f"{model.config.variant} (routing forced: {routing})",
            trained=bool(model.meta.get("trained")), device=device, mamba_backend=backend,
            caption=captions[g], caption_source=caption_sources[g], properties=prop, property_kinds=kinds, neighbours=neighbours[g],
            property_domain=dom, property_domain_threshold=dom_t,
            caption_domain_threshold=model.domain.caption_threshold if model.domain is not None else None,
            timings_ms={k2: v * 1000.0 / len(mols) for k2, v in t.items()}, warnings=warnings))
    return traces[0] if single else traces

