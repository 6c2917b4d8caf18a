"""Evaluation of trained models: :mod:`~hsanet.evaluation.evaluate` (caption a ChEBI-20 split and score
it with the MolT5 protocol; the retrieval baseline) and :mod:`~hsanet.evaluation.report` (the
ablation study against the paper's claims, docs/RESULTS.md). The metrics are in :mod:`hsanet.metrics`."""
