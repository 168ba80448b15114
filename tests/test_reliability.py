"""Reliability: the same seed gives the same pixels in another process; nothing touches
the network on the default path; a training run killed at any moment resumes without
losing work; only our safetensors files load, and nothing is unpickled; bad input across
the public API gives a clear error rather than a crash deep inside torch."""
import hashlib
import os
import pickle
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unclip_lib import ShapesWorld, load_clip, load_evaluator, load_unclip, slerp
from unclip_lib.checkpoints import CheckpointError, load_checkpoint, read_metadata
from unclip_lib.clip import clip_from_checkpoint
from unclip_lib.train import trained_weights

CAPTIONS = ["a small red triangle on the left", "a large blue star"]
GENERATE = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from unclip_lib import load_unclip
x = load_unclip("shapes").generate({captions!r}, seed=11)
print(hashlib.sha256(x.numpy().tobytes()).hexdigest())
"""


@pytest.fixture(scope="module")
def pipe():
    return load_unclip("shapes")


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()


def test_same_seed_same_pixels_in_another_process(pipe):
    here = pipe.generate(CAPTIONS, seed=11)
    assert torch.equal(here, pipe.generate(CAPTIONS, seed=11))
    assert not torch.equal(here, pipe.generate(CAPTIONS, seed=12))
    out = subprocess.run([sys.executable, "-c", GENERATE.format(captions=CAPTIONS), str(torch.get_num_threads())],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == _digest(here)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Every way to open a connection raises, and records the attempt; model caches point
    at an empty folder, so nothing could be found there either."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise ConnectionRefusedError("network access is blocked in this test")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return attempts


def test_default_path_never_touches_the_network(no_network):
    stack = load_unclip("shapes")
    evaluator = load_evaluator("shapes")
    images = stack.generate(CAPTIONS, seed=3)
    assert images.shape == (2, 3, 128, 128)
    source = ShapesWorld(seed=3).sample(1).images
    assert stack.variations(source, n=2, upsample=False).shape == (2, 3, 32, 32)
    assert len(evaluator.predict(images)) == 2
    # asking for a real CLIP that is not cached fails at once, naming the fix, without trying to fetch it
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert no_network == []


def _train(run_dir: Path, steps: int, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unclip_lib.cli", "train", "clip", "--preset", "micro", "--steps", str(steps),
           "--batch-size", "16", "--checkpoint-every", "3", "--threads", "1", "--run-dir", str(run_dir)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _step(run_dir: Path) -> int:
    try:
        return int(read_metadata(run_dir / "checkpoint.safetensors")["extra"]["step"])
    except (FileNotFoundError, CheckpointError):
        return 0


def test_a_killed_training_run_resumes_without_losing_work(tmp_path):
    steps = 45
    reference = _train(tmp_path / "whole", steps)
    assert reference.wait(timeout=600) == 0, reference.stdout.read()

    # start a run in its own process group and SIGKILL it (and its data worker) mid-run
    run = _train(tmp_path / "killed", steps, start_new_session=True)
    deadline = time.time() + 300
    while _step(tmp_path / "killed") < 9 and run.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # then at a random moment (mid-step, mid-render or mid-save: each run of the test tries another)
    time.sleep(random.uniform(0.0, 0.6))
    assert run.poll() is None, "the run ended before it could be killed; raise `steps`"
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    killed_at = _step(tmp_path / "killed")
    assert 9 <= killed_at < steps

    resumed = _train(tmp_path / "killed", steps)
    log = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, log
    assert f"at step {killed_at}/{steps}" in log                 # picked up where the checkpoint was
    whole, again = trained_weights(tmp_path / "whole", "clip"), trained_weights(tmp_path / "killed", "clip")
    assert whole.keys() == again.keys()
    assert all(torch.equal(whole[k], again[k]) for k in whole)   # bit for bit the uninterrupted result


class _Payload:
    """Unpickling this object runs code: it creates a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_only_our_safetensors_load_and_nothing_is_unpickled(tmp_path):
    marker = tmp_path / "the pickle ran"
    evil = tmp_path / "weights.pt"
    evil.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    renamed = tmp_path / "weights.safetensors"
    renamed.write_bytes(evil.read_bytes())
    saved = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(3)}, saved)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))

    for path in (evil, renamed, saved):
        with pytest.raises(CheckpointError, match="not a safetensors file"):
            load_checkpoint(path, "clip")
        with pytest.raises(CheckpointError, match="safetensors"):
            clip_from_checkpoint(path)
        with pytest.raises(CheckpointError, match="safetensors"):
            load_clip("ViT-B-32", pretrained=str(path))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_clip(str(renamed))
    with pytest.raises(CheckpointError, match="not an unclip-lab checkpoint"):
        load_clip(str(foreign))
    assert not marker.exists()

    # and the library never calls an unpickler itself
    source = Path(__file__).parents[1] / "unclip_lib"
    calls = [f"{p.name}: {m.group(0)}" for p in source.glob("*.py")
             for m in re.finditer(r"\b(torch\.load|pickle\.loads?|joblib\.load|np\.load)\(", p.read_text())]
    assert calls == []


# ----------------------------------------------------------------------------- bad input

X = ShapesWorld(seed=0).sample(2).images
NAN = X.clone()
NAN[0, 0, 0, 0] = float("nan")
HUGE = torch.zeros(1, 3, 64, 64).expand(10**6, 3, 64, 64)          # 46 GiB if it were real
RULE = {"shape": "circle", "color": "red", "size": "small", "position": "left"}

BAD = [  # (name, call(clip, evaluator, pipe), error, message pattern)
    ("NaN image", lambda c, e, p: c.encode_image(NAN), ValueError, "NaN"),
    ("empty image batch", lambda c, e, p: c.encode_image(torch.zeros(0, 3, 64, 64)), ValueError, "empty"),
    ("huge image batch", lambda c, e, p: c.encode_image(HUGE), ValueError, "at most"),
    ("int64 pixels", lambda c, e, p: c.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.int64)), TypeError,
     "uint8 or floating"),
    ("bool pixels", lambda c, e, p: c.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.bool)), TypeError,
     "uint8 or floating"),
    ("pixels in 0..255 as float", lambda c, e, p: c.encode_image(X * 255), ValueError, r"x / 255"),
    ("two channels", lambda c, e, p: c.encode_image(torch.rand(1, 2, 64, 64)), ValueError, "3 colour channels"),
    ("RGBA tensor", lambda c, e, p: c.encode_image(torch.rand(1, 4, 64, 64)), ValueError, "RGBA"),
    ("five dimensions", lambda c, e, p: c.encode_image(torch.rand(1, 1, 3, 64, 64)), ValueError, r"\[N, 3, H, W\]"),
    ("a file name", lambda c, e, p: c.encode_image("cat.png"), TypeError, "PIL image"),
    ("images of mixed sizes", lambda c, e, p: c.encode_image([X[0], X[0, :, :32, :32]]), ValueError,
     "different sizes"),
    ("NaN image to the evaluator", lambda c, e, p: e.predict(NAN), ValueError, "NaN"),
    ("huge batch to the evaluator", lambda c, e, p: e.predict(HUGE), ValueError, "at most"),
    ("no captions", lambda c, e, p: c.encode_text([]), ValueError, "empty"),
    ("caption is None", lambda c, e, p: c.encode_text([None]), TypeError, "strings"),
    ("no zero-shot labels", lambda c, e, p: c.zero_shot(X, []), ValueError, "empty"),
    ("empty caption", lambda c, e, p: p.generate([" "]), ValueError, "empty"),
    ("huge caption batch", lambda c, e, p: p.generate(["a red circle"] * 100_000), ValueError, "chunks"),
    ("NaN x_T", lambda c, e, p: p.generate(["a red circle"], x_T=torch.full((1, 3, 32, 32), float("nan"))),
     ValueError, "NaN"),
    ("x_T of the wrong shape", lambda c, e, p: p.generate(["a red circle"], x_T=torch.zeros(2, 3, 32, 32)),
     ValueError, r"x_T must be a tensor \[1, 3, 32, 32\]"),
    ("seed as text", lambda c, e, p: p.generate(["a red circle"], seed="zero"), TypeError, "seed"),
    ("negative guidance", lambda c, e, p: p.generate(["a red circle"], decoder_guidance=-1.0), ValueError,
     "guidance"),
    ("zero steps", lambda c, e, p: p.generate(["a red circle"], decoder_steps=0), ValueError, "steps"),
    ("integer z_i", lambda c, e, p: p.decode(torch.zeros(1, 128, dtype=torch.int64)), TypeError, "floating"),
    ("one z_i without batch axis", lambda c, e, p: p.decode(torch.zeros(128)), ValueError, r"\[N, D\]"),
    ("huge z_i batch", lambda c, e, p: p.decode(torch.zeros(1, 128).expand(10**6, 128)), ValueError, "chunks"),
    ("eta above 1", lambda c, e, p: p.decode(torch.nn.functional.normalize(torch.ones(1, 128), dim=-1), eta=2.0),
     ValueError, "eta"),
    ("NaN image to invert", lambda c, e, p: p.invert(NAN), ValueError, "NaN"),
    ("empty batch to invert", lambda c, e, p: p.invert(torch.zeros(0, 3, 64, 64)), ValueError, "empty"),
    ("empty batch to the evaluator", lambda c, e, p: e.predict(torch.zeros(0, 3, 64, 64)), ValueError, "empty"),
    ("NaN z_i", lambda c, e, p: p.decode(torch.full((1, 128), float("nan"))), ValueError, "NaN"),
    ("NaN image to variations", lambda c, e, p: p.variations(NAN[:1], n=2), ValueError, "NaN"),
    ("NaN image to interpolate", lambda c, e, p: p.interpolate(NAN[:1], X[1:]), ValueError, "NaN"),
    ("empty caption to a text diff", lambda c, e, p: p.text_diff(X[:1], "", "a blue circle"), ValueError, "empty"),
    ("empty batch to upsample", lambda c, e, p: p.upsample(torch.zeros(0, 3, 32, 32)), ValueError, "empty"),
    ("slerp of NaN", lambda c, e, p: slerp(torch.ones(1, 4), torch.full((1, 4), float("nan")), 0.5), ValueError,
     "NaN"),
    ("slerp of mismatched widths", lambda c, e, p: slerp(torch.ones(2, 4), torch.ones(2, 5), 0.5), ValueError,
     "same shape"),
    ("slerp of integers", lambda c, e, p: slerp(torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4), 0.5),
     TypeError, "floating"),
    ("a billion scenes", lambda c, e, p: ShapesWorld().sample(10**9), ValueError, "at most"),
    ("zero resolution", lambda c, e, p: ShapesWorld().sample(1, resolution=0), ValueError, "resolution"),
    ("no scenes to render", lambda c, e, p: ShapesWorld().render([]), ValueError, "empty"),
    ("unknown shape in a caption", lambda c, e, p: ShapesWorld.caption({"shape": "círculo"}), ValueError,
     "shape must be one of"),
]


@pytest.mark.parametrize("name, call, error, pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_a_clear_error(clip, evaluator, pipe, name, call, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        call(clip, evaluator, pipe)
    assert "unclip_lib" in str(info.traceback[-1].path)   # raised by our checks, not deep inside torch


def test_unusual_but_valid_input_works(clip, evaluator, pipe):
    """Unicode captions, other PIL modes (CMYK, 16-bit, float, RGBA, palette, grey + alpha),
    half precision and tiny images are accepted and converted."""
    z = clip.encode_text(["un cercle rouge 🎨 红色的圆", "a red circle"])
    assert z.shape == (2, 128) and torch.isfinite(z).all()
    assert pipe.generate(["a red circle, très rouge ✓"], upsample=False).shape == (1, 3, 32, 32)
    word = ShapesWorld().render([{**RULE, "word": "ünï"}])
    assert word.shape == (1, 3, 64, 64)
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)   # 16-bit: 0 .. 65520
    sixteen = clip.encode_image(Image.fromarray(ramp))
    assert torch.allclose(sixteen, clip.encode_image(torch.from_numpy(ramp / 65535.0).float()[None, None]), atol=1e-5)
    for image in (Image.new("CMYK", (64, 64)), Image.new("F", (64, 64), 0.5), Image.new("RGBA", (64, 64)),
                  Image.new("P", (64, 64)), Image.new("LA", (64, 64)), X.half(), torch.rand(1, 3, 1, 1)):
        assert clip.encode_image(image).shape[-1] == 128
    assert len(evaluator.predict((X * 255).round().to(torch.uint8))) == 2
