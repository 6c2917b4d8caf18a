"""Running a trained HSA-Net for people and tools (not part of the paper's model):

* :mod:`~hsanet.inference.analyze`: one molecule (or a list) -> :class:`~hsanet.inference.trace.Trace`
* :mod:`~hsanet.inference.batch`: a table of molecules under a time budget, errors per row
* :mod:`~hsanet.inference.predict`: batch inference under Lightning's predict loop (several devices)
* :mod:`~hsanet.inference.runtime`: process settings the entry points apply (allocator, lazy imports)
"""
