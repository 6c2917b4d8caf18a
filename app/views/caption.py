"""3. Caption and properties.

Trace fields: ``caption``, ``properties``, ``property_kinds``, ``neighbours``; for a ChEBI-20
molecule, the reference description (hsanet.data.chebi) and sentence BLEU-4 / METEOR
(hsanet.metrics.captions.sentence_scores).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from app.views.common import Page, needs_trace, section


def render(page: Page) -> None:
    header()
    body(page)


def header() -> None:
    section("caption")


def body(page: Page) -> None:
    """The view below its header (app/main.py writes the header first and this once the caption is done)."""
    if not needs_trace(page):
        return
    tr = page.trace
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown(f"**Generated caption** ({page.decoding}"
                    f"{'' if tr.trained else ', untrained model'})")
        if tr.caption is None and page.info.has_decoder:
            st.info("No caption for this molecule in this run (the message above says why).")
        elif tr.caption is None:
            st.info("This model has no caption decoder (no tokenizer in the checkpoint), so there is no caption.")
        elif not tr.caption.strip():
            st.info("The decoder produced an empty caption.")
        else:
            st.markdown(f"> {tr.caption}", unsafe_allow_html=False)
            source = getattr(tr, "caption_source", None)
            if source and source != "generated":
                st.caption(f"Source: {source} — the reranker preferred the caption of a retrieved training "
                           "molecule to the generated one" + (
                               " (score: the model's likelihood, the caption's agreement with the other "
                               "neighbours' captions and its molecule's similarity)"
                               if page.info.rerank_consensus else " (by the model's likelihood)")
                           + ".")
        if tr.neighbours and tr.caption:
            top = tr.neighbours[0].similarity
            if tr.outside_domain().get("caption"):
                st.warning(f"The most similar training molecule has Tanimoto {top:.2f}, below "
                           f"{tr.caption_domain_threshold:.2f} (95 % of validation molecules have a closer one): "
                           "this molecule is unlike what the model learnt from, so its caption is a guess.",
                           icon=":material/warning:")
            else:
                st.caption(f"Nearest training molecule: Tanimoto {top:.2f}"
                           + (f" (warning below {tr.caption_domain_threshold:.2f})"
                              if tr.caption_domain_threshold is not None else ""))
        _chebi(tr)
        if tr.neighbours:
            with st.expander(f"Retrieved reference captions the decoder read ({len(tr.neighbours)})"):
                st.dataframe(pd.DataFrame([{"similarity (Tanimoto)": n.similarity, "SMILES": n.smiles,
                                            "caption": n.caption} for n in tr.neighbours]), hide_index=True)
    with right:
        st.markdown("**Property predictions**")
        if not tr.properties:
            st.caption("This model has no property heads.")
        else:
            outside = tr.outside_domain()
            rows = []
            for name, value in tr.properties.items():
                row = {"task": name, "prediction": float(value),
                       "kind": "probability" if tr.property_kinds.get(name) == "classification" else "value"}
                if name in tr.property_domain:
                    row["nearest training molecule (Tanimoto)"] = tr.property_domain[name]
                    row["applicability"] = ("⚠ outside the training data" if outside.get(name)
                                            else "like the training data")
                rows.append(row)
            st.dataframe(pd.DataFrame(rows), hide_index=True,
                         column_config={"prediction": st.column_config.NumberColumn(format="%.3f"),
                                        "nearest training molecule (Tanimoto)":
                                            st.column_config.NumberColumn(format="%.2f")})
            if any(outside.get(name) for name in tr.properties):
                st.warning("This molecule is less similar to the training molecules of the flagged tasks than 95 % "
                           "of the held-out scaffolds the heads were chosen on: treat those predictions as a guess, "
                           "however confident the number looks.", icon=":material/warning:")
            st.caption("Classification tasks give the head's probability of the positive class; regression tasks "
                       "the predicted value in the dataset's units. *Applicability* compares the Tanimoto "
                       "similarity to the nearest training molecule of that task with a threshold chosen on the "
                       "scaffold split (5th percentile of its validation molecules)."
                       if tr.property_domain else
                       "Classification tasks give the head's probability of the positive class; regression tasks "
                       "the predicted value in the dataset's units. (This checkpoint has no applicability-domain "
                       "data, so how far the molecule is from the training data is not shown.)")


SPLIT_NOTES = {
    "train": "The default model was trained on this caption and its retrieval pool holds it (the molecule is "
             "its own nearest neighbour), so a close match says little about how it describes new molecules.",
    "validation": "The default model did not train on this caption; the validation split chose its weights.",
    "test": "The default model never saw this caption: test molecules are only scored.",
}


def _chebi(tr) -> None:
    try:
        _reference_description(tr)
    except state.StillWorking as exc:
        st.caption(f":hourglass_flowing_sand: {exc}; press **Check again** in a moment.")
        st.button("Check again", key="chebi_retry")


def _reference_description(tr) -> None:
    entry = state.chebi_entry(tr.smiles)
    if entry is False:
        st.caption("ChEBI-20 data not found (`../shared/data` or `$HSANET_DATA`): no reference description.")
        return
    if entry is None:
        st.caption("This molecule is not in ChEBI-20 (train, validation or test), so there is no reference "
                   "description.")
        return
    split, cid, description = entry
    st.markdown(f"**ChEBI-20 reference description** ({split} split, PubChem CID {cid})")
    st.markdown(f"> {description}")
    st.caption(SPLIT_NOTES.get(split, ""))
    if not tr.caption:
        return
    scores, error = state.caption_scores(description, tr.caption)
    if scores is None:
        st.caption(f"Scores unavailable: {error}")
        return
    a, b = st.columns(2)
    a.metric("BLEU-4 (sentence, smoothed)", f"{100 * scores['bleu4']:.1f}")
    b.metric("METEOR", f"{100 * scores['meteor']:.1f}")
    st.caption("Scores ×100 on SciBERT word-pieces, as the MolT5 protocol. One sentence's BLEU is smoothed and "
               "not comparable with a corpus BLEU such as the paper's.")
