"""studies: the torch-free records that search, bench and reports all read and write: the
storage opener and the journal's format, the trial record, the study and confirmation
extracts with their tables and intervals, and the pytest-benchmark reader. It imports neither
torch nor plotly; of ours, only mnistcore's torch-free modules.
"""
