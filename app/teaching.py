"""Teaching mode: a short explanation above each view (what is plotted, what the paper claims, what
to look for). Paper: Shao et al., HSA-Net, AAAI-26 (arXiv 2508.08334)."""
from __future__ import annotations

import streamlit as st

TEXTS: dict[str, str] = {
    "input": (
        "**What you do here.** Draw a molecule in the Ketcher editor and press *Apply*, type or paste a "
        "SMILES string, or pick an example. Everything is first converted to RDKit's canonical SMILES, so "
        "the same molecule drawn two ways gives the same analysis. A CSV with a SMILES column runs many "
        "molecules at once (batch mode).\n\n"
        "**What to look for.** The examples go from ethanol (3 heavy atoms) to vincristine (60), with a "
        "32-atom flavonoid glycoside and a salt (two disconnected parts) on the way: compare how the later "
        "views change with size."
    ),
    "molecule": (
        "**What is drawn.** The molecule as HSA-Net sees it. *BRICS fragments* colours the motifs that feed "
        "the motif branch (the paper uses a retrosynthesis-based fragmentation; BRICS is the stand-in here). "
        "*Scan order* numbers the atoms in the order the structure-aware Graph-Mamba expert reads them: "
        "fragment by fragment, then by degree. *Feature change* colours each atom by how far its node "
        "features moved between two GNN levels.\n\n"
        "**What to look for.** Atoms of one fragment are scanned together, so the Mamba sequence keeps "
        "chemical motifs contiguous. Large changes between early levels and small ones between late levels "
        "are the first sign of over-smoothing."
    ),
    "caption": (
        "**What is shown.** The caption the language model writes from the fused graph tokens, the SMILES and "
        "the instruction (Eq. 6), and the property heads' predictions. For a ChEBI-20 molecule, the reference "
        "description and this caption's sentence BLEU-4 and METEOR.\n\n"
        "**What the paper claims.** On ChEBI-20, HSA-Net with Galactica-1.3B reaches 52.2 BLEU-4 / 69.9 METEOR.\n\n"
        "**What this model is.** A small decoder trained from scratch on the ChEBI-20 training pairs, with the "
        "description of the most similar training molecule in its prompt and a copy head; it returns whichever "
        "of its own caption and that description it finds likelier (the caption's source says which). Its "
        "test scores, and how often it beats simply copying the neighbour, are in the model card "
        "(assets/hsanet-default/README.md). A single sentence's BLEU is noisy and smoothed: it is not "
        "comparable with a corpus BLEU."
    ),
    "oversmoothing": (
        "**What is plotted.** Four measures of how alike the atoms' node features are, at each GNN level, for "
        "this molecule (line) against the reference set (median, and the band between the 25th and 75th "
        "percentiles). MAD: mean cosine distance between atoms. Dirichlet energy: how much features differ "
        "across bonds. Effective rank: how many directions the features still span. Mean cosine similarity: "
        "how aligned they are.\n\n"
        "**What the paper claims.** Deep GNN levels over-smooth: node features become alike, and a projector "
        "that attends to them (E_Attn) collapses (t-SNE, Fig. 2). The paper shows this only with t-SNE; these "
        "plots put numbers on it.\n\n"
        "**What to look for.** Over-smoothing shows as MAD, Dirichlet energy and effective rank falling, and "
        "mean cosine rising, with depth."
    ),
    "routing": (
        "**What is plotted.** For each level, the Hierarchical Adaptive Projector's gate (Eq. 2) gives a "
        "probability to each expert: E_Attn (learned queries cross-attend to the nodes) and E_Mamba (a "
        "structure-aware selective scan). At inference the larger one wins and only its tokens are used "
        "(Eq. 3). Beside it, the share of reference molecules routed to E_Mamba at each level.\n\n"
        "**What the paper claims.** The Mamba share rises with depth (Fig. 5): deep, over-smoothed levels "
        "need the structure-aware expert, shallow levels do well with attention. What this model does is "
        "computed from the reference set below the chart.\n\n"
        "**What to look for.** Does this molecule follow its model's trend? A gate near 0.5 is an uncertain choice."
    ),
    "saf": (
        "**What is plotted.** Source-Aware Fusion: every projector token (4 per level) and every motif token "
        "goes through a router that picks the top-2 of N MLP experts (Eq. 4); the heatmap shows the weights of "
        "the chosen experts (the others are 0). Rows are labelled by the token's source. Below, how often each "
        "expert is chosen over the reference set.\n\n"
        "**What the paper claims.** Tokens from different sources (shallow levels, deep levels, motifs) carry "
        "different information, and routing them to different experts fuses them better than one shared MLP "
        "(in the paper's ablation: 38.8 → 43.5 BLEU-4; our own ablation runs are in docs/RESULTS.md).\n\n"
        "**What to look for.** Blocks: tokens of one source sharing experts. A load-balancing loss keeps all "
        "experts in use, so expert usage over the reference set should be roughly even."
    ),
    "embedding": (
        "**What is plotted.** A UMAP map of reference molecules' embeddings at a chosen stage (a GNN level "
        "pooled, after HAP, or after SAF), precomputed with `hsanet reference build`; the star is the current "
        "molecule placed on it. Hover shows each molecule's generated caption; select a point to see it.\n\n"
        "**What the paper claims.** Attention projector outputs collapse at deep levels while Mamba outputs "
        "stay spread (Fig. 2).\n\n"
        "**What to look for.** Compare how spread the map is at an early and a late level, and whether the "
        "nearest reference molecules describe something like this one."
    ),
    "ablation": (
        "**What is compared.** The same molecule through four variants: attention projectors only, Mamba "
        "projectors only, both without SAF, and the full model.\n\n"
        "**What the paper claims.** In the paper's generalist-setting ablation (its own models, BLEU-4 / METEOR "
        "on ChEBI-20): attn only 37.9 / 67.1, Mamba only 37.5 / 67.9, both without SAF 38.8 / 68.5, full "
        "HSA-Net 43.5 / 72.1. This view scores nothing: it shows one molecule through each variant; our "
        "measured ablation, with seeds and tests, is in docs/RESULTS.md.\n\n"
        "**What to look for.** How routing and the over-smoothing numbers differ. Each column names the "
        "checkpoint it comes from; one without its own checkpoint forces the routing on the full model's "
        "weights: it shows the mechanism, not a retrained model."
    ),
    "runtime": (
        "**What is shown.** Where the computation ran (CPU or which GPU), which Graph-Mamba implementation "
        "ran (the mamba-ssm CUDA kernel or the pure PyTorch scan) and how long each stage took for this "
        "molecule.\n\n"
        "**What to look for.** On a CPU the caption decoder usually dominates; beam search multiplies it."
    ),
    "export": (
        "**What you get.** The molecule's full report as JSON — the same object as `hsanet analyze --json` — "
        "and the plots as PNG or SVG files for slides and papers."
    ),
}


def explain(key: str) -> None:
    """Show the teaching text of a view when teaching mode is on."""
    if st.session_state.get("teaching") and key in TEXTS:
        st.info(TEXTS[key], icon=":material/school:")
