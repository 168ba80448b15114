"""Checkpoints: safetensors files (never pickle) plus the registry of shipped weights.

A checkpoint is one `.safetensors` file whose metadata says what it holds:

    metadata["unclip_lab"] = kind       e.g. "clip", "evaluator"
    metadata["config"]     = JSON of the model's config (so the model can be rebuilt)
    metadata["extra"]      = JSON of anything else (training step, figures, ...)

and, beside it, a `.json` file with the same config for people to read. Writes are
atomic (temporary file, then rename), so a run killed mid-write keeps the previous file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

FORMAT_KEY = "unclip_lab"


def data_dir() -> Path:
    """Where shipped weights live: $UNCLIP_LAB_DATA, else the repository's data/."""
    env = os.environ.get("UNCLIP_LAB_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data"


# name -> (kind, file stem inside data_dir())
SHIPPED = {
    "clip/shapes": ("clip", "clip_shapes"),
    "evaluator/shapes": ("evaluator", "evaluator_shapes"),
    "decoder/shapes": ("decoder", "decoder_shapes"),
    "upsampler/up64": ("upsampler", "upsampler_up64"),
    "upsampler/up128": ("upsampler", "upsampler_up128"),
    "prior/diffusion": ("prior", "prior_diffusion"),
    "prior/autoregressive": ("prior", "prior_autoregressive"),
}


class CheckpointError(ValueError):
    """A file that is not a usable unclip-lab checkpoint for what was asked."""


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], kind: str,
                    config: dict, extra: dict | None = None, write_json: bool = True) -> Path:
    """Atomically write tensors + metadata to `path` (.safetensors), and `path`.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {FORMAT_KEY: kind, "config": json.dumps(config), "extra": json.dumps(extra or {})}
    # safetensors refuses shared or non-contiguous storage: give it clean copies
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(clean, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    if write_json:
        side = path.with_suffix(".json")
        tmp_json = side.with_name(side.name + ".tmp")
        tmp_json.write_text(json.dumps({"kind": kind, "config": config, "extra": extra or {}}, indent=2))
        os.replace(tmp_json, side)
    return path


def read_metadata(path: str | Path) -> dict:
    """The metadata of a checkpoint, with a clear error for anything that is not one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a safetensors file ({err}); unclip-lab only loads "
                              "safetensors checkpoints written by its own training commands") from err
    if FORMAT_KEY not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not an unclip-lab checkpoint "
                              f"(no '{FORMAT_KEY}' metadata)")
    return {"kind": meta[FORMAT_KEY], "config": json.loads(meta.get("config", "{}")),
            "extra": json.loads(meta.get("extra", "{}"))}


def load_checkpoint(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(tensors, config, extra) of a checkpoint of the expected kind."""
    meta = read_metadata(path)
    if meta["kind"] != kind:
        raise CheckpointError(f"{path} holds a '{meta['kind']}' checkpoint, not a '{kind}' one")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from err
    return tensors, meta["config"], meta["extra"]


def load_state_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict strictly, turning key/shape mismatches into one readable error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        lines = [f"{source} does not match the model it is loaded into:"]
        if missing:
            lines.append(f"  missing {len(missing)} tensors, e.g. {missing[:3]}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)} tensors, e.g. {unexpected[:3]}")
        if wrong:
            lines.append(f"  wrong shapes: {wrong[:3]}")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})


def shipped_path(name: str) -> Path:
    """Path of a shipped weights file, e.g. shipped_path("clip/shapes")."""
    if name not in SHIPPED:
        raise KeyError(f"no shipped weights named {name!r}; known: {sorted(SHIPPED)}")
    path = data_dir() / f"{SHIPPED[name][1]}.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"shipped weights {name!r} are missing at {path}. They come with the repository "
            f"(git checkout) or can be retrained with `unclip-lab train {name.split('/')[0]}`.")
    return path


def export_weights(module: torch.nn.Module, path: str | Path, kind: str, config: dict,
                   extra: dict | None = None, half: bool = True, keep_float32: tuple[str, ...] = ()) -> Path:
    """Write a module's weights for shipping; floats stored as float16 to keep the repo
    small (they are cast back to float32 on load), except tensors whose names start with
    one of keep_float32 (e.g. fitted statistics whose precision matters)."""
    state = {k: (v.half() if half and v.is_floating_point() and not k.startswith(keep_float32) else v)
             for k, v in module.state_dict().items()}
    return save_checkpoint(path, state, kind, config, extra)
