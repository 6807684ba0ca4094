"""Image grids and PNG files (which can record the step they come from)."""

from typing import Optional

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


def save_png(path: str, image: np.ndarray, step: Optional[int] = None):
    """Writes a uint8 [H,W,C] (C = 1 to 4) image as PNG, atomically; with `step`, the PNG
    records it (a "step" text chunk, `png_step`)."""
    from PIL import Image

    image = np.asarray(image, np.uint8)
    mode_image = image[..., 0] if image.shape[-1] == 1 else image
    with atomic.replacing(path, ".png") as tmp:
        Image.fromarray(mode_image).save(tmp, pnginfo=_step_info(step))


def _step_info(step: Optional[int]):
    from PIL import PngImagePlugin

    if step is None:
        return None
    info = PngImagePlugin.PngInfo()
    info.add_text("step", str(int(step)))
    return info


def stamp_png(path: str, step: int):
    """Rewrites the PNG at `path` (pixels unchanged) recording `step`."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        with atomic.replacing(path, ".png") as tmp:
            image.save(tmp, pnginfo=_step_info(step))


def png_step(path: str) -> Optional[int]:
    """The step a PNG records (`save_png(..., step)`, `stamp_png`), else None."""
    from PIL import Image

    with Image.open(path) as image:
        value = getattr(image, "text", {}).get("step")
    return int(value) if value is not None else None
