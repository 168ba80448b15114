"""Argument checks shared by the library and the `unclip-lab` command.

Each check returns the cleaned value or raises TypeError (wrong kind of value) or
ValueError (right kind, wrong value) with a message that names the argument and says
what to give instead. They run before any model work, so a bad argument costs nothing.

This module imports neither torch nor numpy: the command checks its arguments with it
before loading either.

    seed = check_seed(seed)                      # an int in [0, MAX_SEED]
    steps = check_int(steps, "steps", 1, 1000)   # or None, if optional=True
    captions = check_captions(captions)          # a list of non-empty strings
"""
from __future__ import annotations

import itertools
import math
import numbers
import os
import tempfile
from pathlib import Path

# Seeds feed torch.Generator.manual_seed, which takes 64 bits, and the pipeline also draws
# from seed + 1 and seed + 2: 63 bits leave room for both.
MAX_SEED = 2**63 - 1
# The most images one pipeline call samples (its whole batch is in memory at once; 1024
# base images take about 2 GB). pipe.defaults.max_batch starts here.
MAX_BATCH = 1024
# The diffusion models' training schedule has this many steps; a sampler takes at most as many.
SCHEDULE_STEPS = 1000
# Fixed-point iterations per DDIM inversion step (each costs one decoder call per step);
# 3 is the default and past ~10 nothing improves.
MAX_REFINE = 100
# What `unclip-lab generate -o` can write (PIL picks the format from the suffix).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Checkpoint file names; anything else that looks like weights is probably a pickle.
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".npz", ".h5", ".onnx")


def close_matches(name, options, n: int = 5) -> str:
    """'; did you mean: a, b?' for a mistyped name (difflib), or ''."""
    import difflib

    matches = difflib.get_close_matches(str(name).lower(), [str(o) for o in options], n=n, cutoff=0.6)
    return f"; did you mean: {', '.join(repr(m) for m in matches)}?" if matches else ""


def is_foreign_weights(name: str) -> bool:
    """Does name look like the path of weights in another format than safetensors (a .pt pickle...)?"""
    suffix = Path(name).suffix.lower()
    return suffix in WEIGHT_SUFFIXES or (bool(suffix) and suffix != ".safetensors" and os.path.isfile(name))


def warn_user(message: str) -> None:
    """A UserWarning attributed to the first caller outside unclip_lib (and torch's no_grad wrapper)."""
    import sys
    import warnings

    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith(here)
                                 or frame.f_code.co_filename.endswith(os.path.join("utils", "_contextlib.py"))):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level + 1)


def _short(value) -> str:
    """repr(value), long ones shortened."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value) -> str:
    """'int 3', 'NoneType None', 'str 'abc''; long values shortened."""
    return f"{type(value).__name__} {_short(value)}"


def is_integer(value) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A Python or numpy real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _checked(value, name: str, what: str, is_kind, low, high, hint: str):
    """value, if it is of the kind `is_kind` accepts, finite and within [low, high]."""
    bounds = (f" in [{low}, {high}]" if low is not None and high is not None else
              f" >= {low}" if low is not None else f" <= {high}" if high is not None else "")
    want = f"{name} must be {what}{bounds}" + (f" ({hint})" if hint else "")
    if not is_kind(value):
        raise TypeError(f"{want}, got {_describe(value)}")
    if not is_integer(value) and not math.isfinite(value):     # (a huge int would overflow a float)
        raise ValueError(f"{want.replace(' must be a ', ' must be a finite ', 1)}, got {_short(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{want}, got {_short(value)}")
    return value


def check_int(value, name: str, low: int | None = None, high: int | None = None,
              optional: bool = False, hint: str = "") -> int | None:
    """An integer in [low, high] (either bound may be None), or None if optional."""
    if value is None and optional:
        return None
    return int(_checked(value, name, "an integer", is_integer, low, high, hint))


def check_number(value, name: str, low: float | None = None, high: float | None = None,
                 optional: bool = False, hint: str = "") -> float | None:
    """A finite real number in [low, high] (either bound may be None), or None if optional."""
    if value is None and optional:
        return None
    return float(_checked(value, name, "a number", is_real, low, high, hint))


def check_seed(seed, name: str = "seed") -> int:
    """A seed: an integer in [0, MAX_SEED] (2**63 - 1)."""
    return check_int(seed, name, 0, MAX_SEED, hint="2**63 - 1 at most; any smaller integer seeds as well")


def check_steps(steps, name: str = "steps", limit: int = SCHEDULE_STEPS, optional: bool = True) -> int | None:
    """A number of sampler steps in [1, limit] (the training schedule's length), or None."""
    return check_int(steps, name, 1, limit, optional, hint=f"the schedule has {limit} steps")


def check_guidance(guidance, name: str = "guidance", optional: bool = True) -> float | None:
    """A classifier-free guidance scale: a finite number >= 0 (1: no guidance), or None."""
    return check_number(guidance, name, 0, None, optional, hint="1: no guidance, 3: the default")


def check_eta(eta, name: str = "eta") -> float:
    """DDIM's eta in [0, 1]."""
    return check_number(eta, name, 0, 1, hint="0: deterministic DDIM, 1: DDPM-like noise")


def check_flag(value, name: str) -> bool:
    """True or False (numpy bools too), not a string or a number that happens to be truthy."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def check_batch(n: int, name: str, limit: int = MAX_BATCH, what: str = "images") -> None:
    """At most `limit` items in one call: the pipeline samples its whole batch at once."""
    if n > limit:
        raise ValueError(f"{name}: {n} {what} in one call; the pipeline samples a whole batch at once, so "
                         f"call it in chunks of at most {limit} (pipe.defaults.max_batch)")


def check_caption(caption, name: str) -> str:
    """One non-empty caption string."""
    if isinstance(caption, (bytes, bytearray)):
        raise TypeError(f"{name} is bytes; give text: decode it first, e.g. caption.decode('utf-8')")
    if not isinstance(caption, str):
        raise TypeError(f"{name} must be a string (captions are strings such as 'a small red triangle'), "
                        f"got {_describe(caption)}")
    if not caption.strip():
        raise ValueError(f"{name} is empty; describe the image, e.g. 'a small red triangle'")
    return caption


def check_captions(captions, name: str = "captions", limit: int | None = None) -> list[str]:
    """A list of non-empty caption strings: one string, or a list / tuple / iterable of them.
    limit: the most captions accepted (checked before the rest of an iterable is read)."""
    if isinstance(captions, str):
        captions = [captions]
    elif isinstance(captions, (bytes, bytearray)):
        raise TypeError(f"{name} is bytes; give text: decode it first, e.g. captions.decode('utf-8')")
    elif isinstance(captions, (dict, set, frozenset)) or not hasattr(captions, "__iter__"):
        raise TypeError(f"{name} must be a string or a list of strings, got {_describe(captions)}")
    if limit is not None:
        head = list(itertools.islice(iter(captions), limit + 1))
        n = len(captions) if hasattr(captions, "__len__") else len(head)
        check_batch(n, name, limit, what="captions")
        captions = head
    captions = list(captions)
    if not captions:
        raise ValueError(f"{name}: got an empty list; give at least one caption, e.g. ['a small red triangle']")
    return [check_caption(c, f"{name}[{i}]") for i, c in enumerate(captions)]


# ----------------------------------------------------------------------------- paths

def _existing_ancestor(path: Path) -> Path:
    """The nearest folder above path that exists (path itself excluded)."""
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _check_writable_folder(folder: Path, name: str, target: Path) -> None:
    if not folder.is_dir():
        raise ValueError(f"{name}: {folder} is a file, not a folder, so {target} cannot be written; "
                         "choose another path")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{name}: cannot write in {folder} ({err.strerror or err}); choose a folder you "
                         "can write to") from None


def _as_path(path, name: str) -> Path:
    if isinstance(path, (str, os.PathLike)) and str(os.fspath(path)).strip():
        return Path(os.fspath(path)).expanduser()
    raise TypeError(f"{name} must be a file path, got {_describe(path)}")


def check_output_file(path, name: str, suffixes: tuple[str, ...], create_folders: bool = False) -> Path:
    """A file that can be written: the right suffix, not a folder, its folder present (or
    creatable, with create_folders) and writable. Checked before any work starts."""
    path = _as_path(path, name)
    if path.is_dir():
        raise ValueError(f"{name}: {path} is a folder; give a file name inside it, e.g. {path / ('out' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        what = f"has the suffix {path.suffix!r}" if path.suffix else "has no file extension"
        raise ValueError(f"{name}: {path} {what}; end it in {' or '.join(suffixes[:3])}, "
                         f"e.g. {path.with_suffix(suffixes[0]).name}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        if not create_folders:
            raise ValueError(f"{name}: the folder {folder} does not exist; create it (mkdir -p {folder}) or "
                             "choose another path")
        folder = _existing_ancestor(path)
    _check_writable_folder(folder, name, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{name}: {path} exists and is read-only; choose another path or make it writable")
    return path


def check_output_folder(path, name: str) -> Path:
    """A folder that exists or can be created, and can be written in."""
    path = _as_path(path, name)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: {path} is a file; give a folder (it is created if missing)")
    _check_writable_folder(path if path.exists() else _existing_ancestor(path), name, path)
    return path


def check_input_path(path, name: str, kind: str = "file", suffixes: tuple[str, ...] = ()) -> Path:
    """An existing path: a file (with one of `suffixes`, if given) for kind="file", a folder
    for kind="folder", either for kind="any"."""
    path = _as_path(path, name)
    if not path.exists():
        raise ValueError(f"{name}: {path} does not exist; check the path")
    if kind == "folder" and not path.is_dir():
        raise ValueError(f"{name}: {path} is a file; give a folder")
    if kind == "file" and path.is_dir():
        raise ValueError(f"{name}: {path} is a folder; give a file{' ending in ' + suffixes[0] if suffixes else ''}")
    if suffixes and path.suffix.lower() not in suffixes:
        hint = (" (unclip-lab loads weights only from .safetensors: convert a checkpoint you trust with "
                "safetensors.torch.save_file)" if ".safetensors" in suffixes else "")
        raise ValueError(f"{name}: {path} is not a {' or '.join(suffixes)} file{hint}")
    return path
