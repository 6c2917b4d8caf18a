"""Metrics of HSA-Net Explorer.

* :mod:`~hsanet.metrics.oversmoothing`: MAD, MADGap, Dirichlet energies, cosine, ranks.
* :mod:`~hsanet.metrics.captions`: the MolT5 caption protocol (BLEU, ROUGE, METEOR).
* :mod:`~hsanet.metrics.wordnet`: offline WordNet 3.0 for METEOR.
* :mod:`~hsanet.metrics.properties`: MoleculeNet ROC-AUC, RMSE, MAE.

Imports are light: nltk, rouge_score, tokenizers and scikit-learn load only when used.
"""
from hsanet.metrics.captions import (
    caption_metrics,
    read_predictions,
    score_predictions,
    sentence_scores,
    write_predictions,
)
from hsanet.metrics.oversmoothing import (
    all_metrics,
    dirichlet_energy,
    dirichlet_energy_normalized,
    effective_rank,
    hop_distances,
    mad,
    mad_gap,
    mean_cosine,
    numerical_rank,
)
from hsanet.metrics.properties import mae, rmse, roc_auc_multitask


def __getattr__(name):
    # imported on demand so that ``python -m hsanet.metrics.wordnet`` runs without a
    # "found in sys.modules" warning
    if name == "ensure_wordnet":
        from hsanet.metrics.wordnet import ensure_wordnet

        return ensure_wordnet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "all_metrics", "caption_metrics", "dirichlet_energy", "dirichlet_energy_normalized",
    "effective_rank", "ensure_wordnet", "hop_distances", "mad", "mad_gap", "mae", "mean_cosine",
    "numerical_rank", "read_predictions", "rmse", "roc_auc_multitask", "score_predictions",
    "sentence_scores", "write_predictions",
]
