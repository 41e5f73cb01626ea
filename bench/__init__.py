"""pytest-benchmark suites: the step the search trains with (``Population.train``; one model is a
population of one) alone and in populations, ``evaluate``, the data path and time to accuracy
against the PyTorch tutorial's loop (``seed_baseline``), on CPU and CUDA. ``pytest bench/
--benchmark-autosave`` (``--quick``: a short run); ``python -m bench.summary`` prints a saved
run, ``python -m bench.compare`` is the regression gate.
"""
