"""studies: the torch-free records that search, bench and reports all read and write.

Modules by job: ``storage`` (the one opener of an Optuna storage, for writing and reading),
``journal`` (the journal file's format: damage found, cut ends mended, repair), ``trial_record``
(the names of the attributes stored on each trial), ``study_data`` (the extract of a study
that the terminal summary prints and the report draws; its trial tables in ``study_tables``),
``confirmation`` (the extract of confirmation runs), ``intervals`` (Wilson and t intervals),
``formatting`` (numbers and commands as text), ``bench_data`` (the reader of pytest-benchmark
JSON; its tables in ``bench_tables``). It imports neither torch nor plotly; of ours, only
``mnistcore.errors``.
"""
