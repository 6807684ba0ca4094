"""vdm_vae: a VAE whose decoder is a conditional Variational Diffusion Model."""

from vdm_vae.checkpoints import load
from vdm_vae.model import VDMVAE, VAEOutput
from vdm_vae.model import init_params as init
from vdm_vae.model_config import EncoderConfig, LossConfig, ModelConfig
from vdm_vae.sampling import encode, sample
from vdm_vae.w_prior import load_prior

__all__ = ["EncoderConfig", "LossConfig", "ModelConfig", "VAEOutput", "VDMVAE", "encode", "init",
           "load", "load_prior", "sample"]
