"""Images across the API: float tensors [N, 3, H, W] in [0, 1].

`as_image_batch` accepts what users have at hand (tensors, PIL images, numpy arrays,
lists of those) and converts it, or fails with an error that says what to change.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# The largest batch converted in one call: 2**30 float32 values (4 GiB), e.g. 21,000 images
# of 128 x 128. Larger batches fail here with a clear message rather than deep in torch.
MAX_VALUES = 2**30


def _from_pil(img: Image.Image) -> torch.Tensor:
    if img.mode.startswith(("I;16", "I")) or img.mode == "F":
        # 16/32-bit grayscale: PIL's convert("RGB") would clip everything above 255 to white
        a = np.asarray(img, dtype=np.float64)
        if img.mode != "F":
            a = a / (65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0)
        return torch.from_numpy(a).float()[None].expand(3, -1, -1)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        # composite transparency over white, as a viewer would show it
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)


def as_image_batch(images, name: str = "images") -> torch.Tensor:
    """Convert to a float32 batch [N, 3, H, W] in [0, 1].

    Accepts a tensor or numpy array [N, 3, H, W], [3, H, W], [N, H, W, 3] or [H, W, 3]
    (uint8 0..255 or float 0..1), a PIL image, or a list of any of these. One-channel
    images are repeated to three channels; PIL transparency is composited over white.
    """
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"{name}: got an empty list; pass at least one image")
        parts = [as_image_batch(_from_pil(im) if isinstance(im, Image.Image) else im, name)
                 for im in images]
        sizes = {tuple(p.shape[-2:]) for p in parts}
        if len(sizes) > 1:
            raise ValueError(f"{name}: images have different sizes {sorted(sizes)}; resize them to one size first")
        return torch.cat(parts)
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, numpy array or PIL image, got {type(images).__name__}")
    x = images
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"{name}: expected shape [N, 3, H, W] or [3, H, W], got {list(images.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)  # channels-last input
    if x.shape[1] == 4:
        raise ValueError(f"{name}: got 4 channels (RGBA?); drop or composite the alpha channel to get [N, 3, H, W]")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"{name}: expected 3 colour channels, got shape {list(images.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: got an empty batch; pass at least one image")
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"{name}: images have no pixels (shape {list(images.shape)})")
    if x.numel() > MAX_VALUES:
        n, _, h, w = x.shape
        raise ValueError(f"{name}: {n} images of {h} x {w} would take {x.numel() * 4 / 2**30:.0f} GiB as float32;"
                         f" pass at most {max(1, MAX_VALUES // (3 * h * w))} at a time (or resize them first)")
    if x.dtype == torch.uint8:
        x = x.float() / 255
    elif x.is_floating_point():
        x = x.float()
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        lo, hi = x.min().item(), x.max().item()
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"{name}: float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]"
                             " (from [-1, 1] use (x + 1) / 2; from 0..255 use x / 255)")
        x = x.clamp(0, 1)
    else:
        raise TypeError(f"{name}: expected uint8 or floating-point pixels, got {x.dtype}")
    return x.contiguous()


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch [N, 3, H, W] to [N, 3, size, size] (antialiased bicubic, clamped)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1)
