"""The model: VDM maths, noise schedules, the encoder, the score U-Nets, the objective and the
VAE that joins them (vae.py). Readable maths first; XLA:CPU formulations live in vdm_vae.cpu."""
