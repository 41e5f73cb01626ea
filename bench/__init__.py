"""pytest-benchmark suites, on CPU and CUDA: the step the search trains with (``Population.train``)
alone and in populations, ``evaluate``, the data path and time to accuracy against the PyTorch
tutorial's loop (``seed_baseline``). ``python -m bench.summary`` prints a saved run,
``python -m bench.compare`` is the regression gate."""
