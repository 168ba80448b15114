"""Checkpoints: safetensors files (never pickle) plus the registry of shipped weights.

A checkpoint is one `.safetensors` file whose metadata says what it holds:

    metadata["unclip_lab"]     = kind       e.g. "clip", "evaluator"
    metadata["config"]         = JSON of the model's config (so the model can be rebuilt)
    metadata["extra"]          = JSON of anything else (training step, figures, ...)
    metadata["content_sha256"] = sha256 of the tensors (names, dtypes, shapes and bytes)

and, beside it, a `.json` file with the same config for people to read. Writes are
atomic (temporary file, then rename), so a run killed mid-write keeps the previous file.

Integrity: loading recomputes the content hash and refuses a file whose tensors changed
since it was saved (files written before the hash existed load without the check). Every
shipped file in data/ is also pinned by the sha256 of its bytes in data/SHA256SUMS (as
open_clip pins its pretrained weights), checked on every load; after replacing a shipped
file on purpose, re-pin with `python scripts/pin_weights.py`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .checks import is_foreign_weights

FORMAT_KEY = "unclip_lab"
CONTENT_KEY = "content_sha256"
PINS_FILE = "SHA256SUMS"
PIN_SCRIPT = "python scripts/pin_weights.py"


def data_dir() -> Path:
    """Where shipped weights live: $UNCLIP_LAB_DATA, else the repository's data/."""
    env = os.environ.get("UNCLIP_LAB_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data"


# name -> (kind, file stem inside data_dir())
SHIPPED = {
    "clip/shapes": ("clip", "clip_shapes"),
    "clip/emoji": ("clip", "clip_emoji"),
    "evaluator/shapes": ("evaluator", "evaluator_shapes"),
    "evaluator/emoji": ("evaluator", "evaluator_emoji"),
    "decoder/shapes": ("decoder", "decoder_shapes"),
    "decoder/shapes_inpaint": ("decoder", "decoder_shapes_inpaint"),   # edits, GLIDE's way
    "decoder/emoji": ("decoder", "decoder_emoji"),
    "upsampler/up64": ("upsampler", "upsampler_up64"),
    "upsampler/up128": ("upsampler", "upsampler_up128"),
    "upsampler/emoji_up64": ("upsampler", "upsampler_emoji_up64"),   # up64 fine-tuned on emoji
    "prior/diffusion": ("prior", "prior_diffusion"),
    "prior/autoregressive": ("prior", "prior_autoregressive"),
    "prior/emoji_diffusion": ("prior", "prior_emoji_diffusion"),
    "prior/emoji_autoregressive": ("prior", "prior_emoji_autoregressive"),
}


class CheckpointError(ValueError):
    """A file that is not a usable unclip-lab checkpoint for what was asked."""


# ----------------------------------------------------------------------------- hashes and pins

def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's content: every tensor's name, dtype, shape and bytes, in
    name order. What save_checkpoint stores and load_checkpoint checks."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{str(t.dtype).removeprefix('torch.')}\0{list(t.shape)}\0".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (what data/SHA256SUMS pins)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_pins(folder: str | Path | None = None) -> dict[str, str]:
    """{file name: sha256} from the SHA256SUMS file of the shipped weights (sha256sum's format)."""
    path = Path(folder or data_dir()) / PINS_FILE
    if not path.exists():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            pins[name.lstrip("*")] = digest
    return pins


def write_pins(folder: str | Path | None = None) -> dict[str, str]:
    """Pin every shipped file: rewrite SHA256SUMS with the sha256 of each file in SHIPPED
    (`sha256sum -c SHA256SUMS` checks it too). Returns the pins."""
    folder = Path(folder or data_dir())
    pins = {f"{stem}.safetensors": file_sha256(folder / f"{stem}.safetensors") for _, stem in SHIPPED.values()}
    tmp = folder / (PINS_FILE + ".tmp")
    tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(pins.items())))
    os.replace(tmp, folder / PINS_FILE)
    return pins


def _shipped_name(path: Path) -> str | None:
    """The registry name of a shipped file in data_dir(), or None for any other file."""
    if path.resolve().parent != data_dir().resolve():
        return None
    return next((name for name, (_, stem) in SHIPPED.items() if path.name == f"{stem}.safetensors"), None)


def _display(path: Path) -> str:
    """data/<file> for a file of the repository's data/ folder, else the path as given."""
    repo = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(repo))
    except ValueError:
        return str(path)


def restore_hint(name: str, path: Path) -> str:
    """How to get a shipped file back: from git, or by retraining it."""
    kind, _, short = name.partition("/")
    option = {"upsampler": f" --stage {short}", "prior": f" --kind {short}"}.get(kind, "")
    shown = _display(path)
    return (f"restore it with `git checkout {shown}`, or retrain it with `unclip-lab train {kind}{option} ... "
            f"--export {shown}` (README, 'Training the shipped weights'); if you replaced it on purpose, re-pin "
            f"the shipped files with `{PIN_SCRIPT}`")


def verify_pin(path: str | Path) -> None:
    """For a shipped file in data_dir(): check its bytes against data/SHA256SUMS. Other files pass."""
    path = Path(path)
    name = _shipped_name(path)
    if name is None:
        return
    pins = read_pins(path.parent)
    if path.name not in pins:
        raise CheckpointError(f"{_display(path)} is a shipped file but has no pin in "
                              f"{_display(path.parent / PINS_FILE)}; pin it with `{PIN_SCRIPT}`")
    if file_sha256(path) != pins[path.name]:
        raise CheckpointError(f"{_display(path)} does not match its pinned sha256 in "
                              f"{_display(path.parent / PINS_FILE)}: the file is corrupt or was replaced; "
                              + restore_hint(name, path))


def _verify_content(path: Path, tensors: dict[str, torch.Tensor], stored: str | None) -> None:
    if stored is None:
        return  # written before content hashes existed
    if tensor_digest(tensors) != stored:
        name = _shipped_name(path)
        fix = restore_hint(name, path) if name else (
            "restore it from a copy, or write it again with the command that made it (e.g. `unclip-lab train "
            "... --export`; a run folder's checkpoint.safetensors is rewritten by rerunning its training command)")
        raise CheckpointError(f"{_display(path)} is corrupt: its tensors do not match the content hash stored "
                              f"when it was saved (a changed byte, or a broken copy); {fix}")


# ----------------------------------------------------------------------------- files

def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], kind: str,
                    config: dict, extra: dict | None = None, write_json: bool = True) -> Path:
    """Atomically write tensors + metadata (with their content hash) to `path` (.safetensors),
    and `path`.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or non-contiguous storage: give it clean copies
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    metadata = {FORMAT_KEY: kind, "config": json.dumps(config), "extra": json.dumps(extra or {}),
                CONTENT_KEY: tensor_digest(clean)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(clean, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    if write_json:
        write_readable_twin(path, {"kind": kind, "config": config, "extra": extra or {}})
    return path


def readable_twin(path: str | Path) -> dict:
    """What the `.json` beside a checkpoint must hold: its kind, config and extra metadata."""
    meta = read_metadata(path)
    return {"kind": meta["kind"], "config": meta["config"], "extra": meta["extra"]}


def write_readable_twin(path: str | Path, twin: dict | None = None) -> Path:
    """(Re)write the `.json` beside a checkpoint, for people to read (default: from the file's
    own metadata, so that a checkpoint copied into place never keeps a stale twin)."""
    side = Path(path).with_suffix(".json")
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(twin if twin is not None else readable_twin(path), indent=2))
    os.replace(tmp, side)
    return side


def _checkpoint_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint path must be a str or Path of a .safetensors file, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the .safetensors file inside it "
                              f"(e.g. {path}/checkpoint.safetensors)")
    return path


def read_metadata(path: str | Path) -> dict:
    """The metadata of a checkpoint, with a clear error for anything that is not one."""
    path = _checkpoint_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a safetensors file ({err}); unclip-lab only loads "
                              "safetensors checkpoints written by its own training commands") from err
    if FORMAT_KEY not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not an unclip-lab checkpoint "
                              f"(no '{FORMAT_KEY}' metadata)")
    try:
        config, extra = json.loads(meta.get("config", "{}")), json.loads(meta.get("extra", "{}"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is corrupt: its metadata is not valid JSON ({err})") from err
    return {"kind": meta[FORMAT_KEY], "config": config, "extra": extra, CONTENT_KEY: meta.get(CONTENT_KEY)}


def load_checkpoint(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(tensors, config, extra) of a checkpoint of the expected kind, after checking a
    shipped file against its pin and any file against its stored content hash."""
    meta = read_metadata(path)
    path = Path(path)
    if meta["kind"] != kind:
        raise CheckpointError(f"{path} holds a '{meta['kind']}' checkpoint, not a '{kind}' one")
    verify_pin(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from err
    _verify_content(path, tensors, meta[CONTENT_KEY])
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


def foreign_weights_error(loader: str, name: str) -> CheckpointError:
    return CheckpointError(
        f"{loader}: {name!r} is not a .safetensors file; unclip-lab loads local weights only from .safetensors "
        "files, which cannot run code (a .pt or .bin pickle can): convert a checkpoint you trust once with "
        "safetensors.torch.save_file")


def _not_a_shipped_name(kind: str, short: str) -> Exception:
    """The error for load_<kind>(short) when short names no shipped file."""
    known = sorted(n.split("/", 1)[1] for n in SHIPPED if n.startswith(f"{kind}/"))
    loader = f"load_{kind}"
    if is_foreign_weights(short):
        return foreign_weights_error(loader, short)
    if "/" in short or os.sep in short or Path(short).exists():
        return FileNotFoundError(f"{loader}: {short!r} is neither a shipped {kind} ({known}) nor the path of a "
                                 ".safetensors checkpoint; check the path (it must end in .safetensors)")
    return KeyError(f"{loader}: no shipped {kind} named {short!r}; known: {known}, or pass the path of a "
                    ".safetensors checkpoint")


def weights_name(name, kind: str) -> str:
    """A loader's name argument as a string: a shipped name of `kind` or a path (str or Path)."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name.strip():
        known = sorted(n.split("/", 1)[1] for n in SHIPPED if n.startswith(f"{kind}/"))
        raise TypeError(f"load_{kind}: name must be a shipped {kind} ({known}) or the path of a .safetensors "
                        f"checkpoint, got {type(name).__name__} {name!r}")
    return name


def shipped_names(kind: str) -> list[str]:
    """The short names of the shipped weights of one kind, e.g. shipped_names("clip") ->
    ["shapes", "emoji"]."""
    return [name.partition("/")[2] for name, (k, _) in SHIPPED.items() if k == kind]


def shipped_path(name: str) -> Path:
    """Path of a shipped weights file, e.g. shipped_path("clip/shapes")."""
    if name not in SHIPPED:
        kind, _, short = str(name).partition("/")
        if kind in {k for k, _ in SHIPPED.values()}:
            raise _not_a_shipped_name(kind, short)
        raise KeyError(f"no shipped weights named {name!r}; known: {sorted(SHIPPED)}")
    path = data_dir() / f"{SHIPPED[name][1]}.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"shipped weights {name!r} are missing at {path}. They come with the repository "
            f"(git checkout {_display(path)}) or can be retrained with `unclip-lab train {name.split('/')[0]}`.")
    return path


def export_weights(module: torch.nn.Module, path: str | Path, kind: str, config: dict,
                   extra: dict | None = None, half: bool = True, keep_float32: tuple[str, ...] = ()) -> Path:
    """Write a module's weights for shipping; floats stored as float16 to keep the repo
    small (they are cast back to float32 on load), except tensors whose names start with
    one of keep_float32 (e.g. fitted statistics whose precision matters)."""
    state = {k: (v.half() if half and v.is_floating_point() and not k.startswith(keep_float32) else v)
             for k, v in module.state_dict().items()}
    return save_checkpoint(path, state, kind, config, extra)
