"""Image grids and PNG files."""

import numpy as np

from vdm_vae.runtime import atomic


def image_grid(images: np.ndarray, ncol: int, pad: int = 1) -> np.ndarray:
    """Tiles uint8 images [N,H,W,C] row by row into one [rows*(H+pad)+pad, ..., C] image."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def save_png(path: str, image: np.ndarray):
    """Writes a uint8 [H,W,C] (C = 1 or 3) image as PNG, atomically."""
    from PIL import Image

    image = np.asarray(image, np.uint8)
    mode_image = image[..., 0] if image.shape[-1] == 1 else image
    with atomic.replacing(path, ".png") as tmp:
        Image.fromarray(mode_image).save(tmp)
