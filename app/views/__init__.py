"""One module per view of the app, top to bottom (see common.SECTIONS)."""
