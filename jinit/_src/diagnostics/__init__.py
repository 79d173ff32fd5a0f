"""Per-layer statistics of a model on a batch (stats.py) and the checks that read them
(findings.py); docs/diagnosing.md defines every statistic and criterion."""
