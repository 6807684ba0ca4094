"""Evaluation of trained runs: the bound and diagnostics, paired comparisons, FID sampling and
the prior over w fitted after training."""
