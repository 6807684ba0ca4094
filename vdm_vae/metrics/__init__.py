"""Model-independent evaluation metrics: posterior collapse, probes and FID."""
