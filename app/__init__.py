"""HSA-Net Explorer, the Streamlit app (``./run app``). It renders a :class:`hsanet.trace.Trace`;
no model logic lives here."""
