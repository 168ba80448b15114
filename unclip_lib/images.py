"""Images across the API: float tensors [N, 3, H, W] in [0, 1].

`as_image_batch` accepts what users have at hand (tensors, PIL images, numpy arrays,
lists of those) and converts it, or fails with an error that says what to change.
`resize` brings a batch to a square size; images that are not square are centre-cropped
to a square first (as `data.py` does with image files), never stretched.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checks import check_batch, check_int

# The largest batch converted in one call: 2**30 float32 values (4 GiB), e.g. 21,000 images
# of 128 x 128. Larger batches fail here with a clear message rather than deep in torch.
MAX_VALUES = 2**30
# The smallest image side accepted: the models read 32 to 64 px, and a smaller picture
# (a 1 x 1 "image" is a colour) carries nothing they could use.
MIN_SIDE = 8
# PIL modes holding one integer or float value per pixel, beyond 8 bits
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _from_pil(img: Image.Image, name: str) -> torch.Tensor:
    if img.mode in _WIDE_MODES:
        return _from_wide_pil(img, name)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        # composite transparency over white, as a viewer would show it
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)


def _from_wide_pil(img: Image.Image, name: str) -> torch.Tensor:
    """16/32-bit grayscale (PIL's convert("RGB") would clip everything above 255 to white)
    and float images: [3, H, W] in [0, 1], or an error naming the mode's range."""
    a = np.asarray(img, dtype=np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if img.mode == "F":
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: the PIL image of mode 'F' contains NaN or infinite values; replace them first")
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"{name}: a PIL image of mode 'F' must hold values in [0, 1], got [{lo:.3g}, {hi:.3g}];"
                             " rescale it first, e.g. Image.fromarray(np.asarray(img) / 255) for 0..255")
        a = a.clip(0, 1)
    else:
        if lo < 0 or hi > 65535:
            raise ValueError(f"{name}: a PIL image of mode '{img.mode}' holds values in [{lo:.0f}, {hi:.0f}], beyond"
                             " 16-bit pixels (0..65535); rescale it to 0..65535 or 0..255 first")
        a = a / (65535.0 if img.mode.startswith("I;16") or hi > 255 else 255.0)
    return torch.from_numpy(a).float()[None].expand(3, -1, -1)


def _values(item) -> int:
    """How many values an item holds, before converting it."""
    if isinstance(item, Image.Image):
        return item.width * item.height * 3
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return int(np.prod(item.shape, dtype=np.int64))
    if isinstance(item, (list, tuple)):
        return sum(_values(i) for i in item)
    return 0


def _count(item) -> int:
    """How many images an item holds, before converting it (a guess for odd shapes)."""
    if isinstance(item, (list, tuple)):
        return sum(_count(i) for i in item)
    shape = getattr(item, "shape", ())
    return int(shape[0]) if len(shape) == 4 else 1


def _too_large(name: str, n: int, h: int, w: int) -> ValueError:
    return ValueError(f"{name}: {n} images of {h} x {w} would take {n * 3 * h * w * 4 / 2**30:.0f} GiB as float32;"
                      f" pass at most {max(1, MAX_VALUES // (3 * h * w))} at a time (or resize them first)")


def _from_list(images: list | tuple, name: str, limit: int | None) -> torch.Tensor:
    if len(images) == 0:
        raise ValueError(f"{name}: got an empty list; pass at least one image")
    if limit is not None:
        check_batch(_count(images), name, limit)
    total = _values(images)
    if total > MAX_VALUES:
        raise ValueError(f"{name}: {len(images)} images holding {total:,} values would take "
                         f"{total * 4 / 2**30:.0f} GiB as float32; pass fewer at a time (or resize them first)")
    parts = [as_image_batch(_from_pil(im, f"{name}[{i}]") if isinstance(im, Image.Image) else im, f"{name}[{i}]")
             for i, im in enumerate(images)]
    sizes = {tuple(p.shape[-2:]) for p in parts}
    if len(sizes) > 1:
        raise ValueError(f"{name}: images have different sizes {sorted(sizes)}; resize them to one size first")
    return torch.cat(parts)


def _from_numpy(a: np.ndarray, name: str) -> torch.Tensor:
    if a.dtype == object:
        raise TypeError(f"{name}: a numpy array of dtype object (images of different sizes in one array?);"
                        " give a uint8 or float array of images of one size, or a list of arrays")
    if a.dtype != np.uint8 and a.dtype.kind != "f":
        raise TypeError(_dtype_message(name, f"numpy {a.dtype}", a.dtype.kind in "iu"))
    if a.size > MAX_VALUES:     # before a copy of a broadcast view could allocate it
        h, w = (a.shape[-2:] if a.ndim >= 2 else (1, 1))
        raise _too_large(name, max(1, a.size // max(1, 3 * h * w)), h, w)
    return torch.from_numpy(np.ascontiguousarray(a))


def _dtype_message(name: str, dtype: str, integer: bool) -> str:
    fix = ("convert them to float in [0, 1], e.g. x / 65535 for 16-bit pixels" if integer else
           "give uint8 (0..255) or float (0..1) pixels")
    return f"{name}: expected uint8 or floating-point pixels, got {dtype}; {fix}"


def _as_nchw(x: torch.Tensor, name: str) -> torch.Tensor:
    """[N, 3, H, W] (or [N, 1, H, W] repeated to three channels) from the accepted layouts."""
    shape = list(x.shape)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"{name}: expected shape [N, 3, H, W] or [3, H, W], got {shape}"
                         + ("; a grey image [H, W] needs a channel axis: x[None]" if len(shape) == 2 else ""))
    if x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)  # channels-last input
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] not in (3, 4):
        raise ValueError(f"{name}: expected 3 colour channels (or RGBA), got shape {shape}; give [N, 3, H, W] or"
                         " [N, H, W, 3]")
    return x


def _over_white(x: torch.Tensor) -> torch.Tensor:
    """RGBA [N, 4, H, W] in [0, 1] (straight alpha) composited over white: [N, 3, H, W],
    as the emoji data are rendered and as a viewer shows a transparent picture."""
    rgb, alpha = x[:, :3], x[:, 3:]
    return rgb * alpha + (1 - alpha)


def as_image_batch(images, name: str = "images", limit: int | None = None) -> torch.Tensor:
    """Convert to a float32 batch [N, 3, H, W] in [0, 1].

    Accepts a tensor or numpy array [N, 3, H, W], [3, H, W], [N, H, W, 3] or [H, W, 3]
    (uint8 0..255 or float 0..1), a PIL image (any mode; 16-bit and float ones by their
    range), or a list of any of these. A [3, H, W] array is always one RGB image (a batch
    of grey images is [N, 1, H, W]); one-channel images are repeated to three channels;
    transparency (PIL modes with alpha, or a fourth channel RGBA) is composited over white. Images must be at least 8 x 8 pixels.
    limit: the most images accepted, checked before anything is converted.
    """
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        x = _from_list(images, name, limit)
    elif isinstance(images, np.ndarray):
        x = _from_numpy(images, name)
    elif isinstance(images, torch.Tensor):
        x = images
    else:
        hint = (f"; load the file first, e.g. PIL.Image.open({str(images)!r})"
                if isinstance(images, str) or hasattr(images, "__fspath__") else "")
        raise TypeError(f"{name}: expected a tensor, numpy array or PIL image, got {type(images).__name__}{hint}")
    return _checked_pixels(_as_nchw(x, name), name, limit)


def _checked_pixels(x: torch.Tensor, name: str, limit: int | None) -> torch.Tensor:
    """The batch's size, then its pixel type and values: float32 in [0, 1]."""
    n, _, h, w = x.shape
    if n == 0:
        raise ValueError(f"{name}: got an empty batch; pass at least one image")
    if limit is not None:
        check_batch(n, name, limit)
    if x.numel() > MAX_VALUES:
        raise _too_large(name, n, h, w)
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ValueError(f"{name}: images of {h} x {w} pixels are too small; give at least {MIN_SIDE} x {MIN_SIDE}"
                         " (the models read 32 to 64 px and resize anything else)")
    if x.dtype == torch.uint8:
        x = x.float() / 255
        return (_over_white(x) if x.shape[1] == 4 else x).contiguous()
    if not x.is_floating_point():
        raise TypeError(_dtype_message(name, str(x.dtype), x.dtype != torch.bool and not x.is_complex()))
    x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values; replace them (e.g. torch.nan_to_num) first")
    lo, hi = x.min().item(), x.max().item()
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name}: float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]"
                         " (from [-1, 1] use (x + 1) / 2; from 0..255 use x / 255)")
    x = x.clamp(0, 1)
    return (_over_white(x) if x.shape[1] == 4 else x).contiguous()


def center_crop(images: torch.Tensor) -> torch.Tensor:
    """The largest centred square of each image [N, C, H, W] (the crop data.py makes)."""
    h, w = images.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return images[..., top:top + s, left:left + s]


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch [N, 3, H, W] to [N, 3, size, size] (antialiased bicubic, clamped).
    Images that are not square are centre-cropped to a square first, never stretched."""
    size = check_int(size, "size", 1, None)
    images = center_crop(images)
    if images.shape[-1] == size:
        return images.contiguous()
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1)
