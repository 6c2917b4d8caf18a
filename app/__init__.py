"""HSA-Net Explorer, the Streamlit app (``./run app``). It renders a :class:`hsanet.inference.trace.Trace`;
no model logic lives here."""
