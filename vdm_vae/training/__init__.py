"""Training: the loop (loop.py), the pmapped train step (step.py), checkpoints and writers."""
