"""Statistics of a model on a batch (stats.py) and the checks that read them (findings.py)."""
