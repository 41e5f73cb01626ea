"""pytest-benchmark suites: ``mnistcore.train_step`` on CPU vs CUDA, ``evaluate``, the data path.

Run ``pytest bench/ --benchmark-autosave``; ``--quick`` for a shorter run. Helpers live in
``timing`` (the timed callable and the ``extra_info`` record), ``workloads`` (what is timed on
the mnistcore side), ``seed_baseline`` (the PyTorch MNIST tutorial's pipeline) and
``data_files`` (the IDX files both pipelines read); ``summary`` prints a saved JSON as a table;
``compare`` is the regression gate (medians and a rank test over the rounds of two runs).
"""
