"""Reliability: the same seed gives the same pixels in another process; nothing touches
the network on the default path; a training run killed at any moment resumes without
losing work; only our safetensors files load, and nothing is unpickled; bad input across
the public API (a sweep of well over a hundred kinds) gives a clear error that names the
argument and the fix, before any model runs; shipped files are checked against their
pinned sha256 and every saved checkpoint against its content hash (the CLI's sweep is in
test_cli.py)."""
import hashlib
import importlib.util
import itertools
import json
import os
import pickle
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from unclip_lib import Bipartite, ShapesWorld, load_clip, load_evaluator, load_unclip, slerp, text_diff_direction
from unclip_lib.checkpoints import (SHIPPED, CheckpointError, data_dir, file_sha256, load_checkpoint, read_metadata,
                                    read_pins, save_checkpoint, tensor_digest)
from unclip_lib.clip import clip_from_checkpoint
from unclip_lib.decoder import load_decoder, load_upsampler
from unclip_lib.images import as_image_batch, resize
from unclip_lib.latents import EmbeddingPCA
from unclip_lib.prior import load_prior
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
# One row per kind of bad input: the call, the exception type, a piece of text naming the
# argument, and a pattern for what to change. Every row must fail before any model runs
# (no forward pass of CLIP, the priors, the decoder, the upsamplers or the evaluator) and
# without allocating more than a little memory on its way to the error.

X = ShapesWorld(seed=0).sample(2).images
NAN = X.clone()
NAN[0, 0, 0, 0] = float("nan")
HUGE = torch.zeros(1, 3, 64, 64).expand(10**6, 3, 64, 64)          # 46 GiB if it were real
RULE = {"shape": "circle", "color": "red", "size": "small", "position": "left"}
Z = torch.nn.functional.normalize(torch.randn(2, 128, generator=torch.Generator().manual_seed(0)), dim=-1)
XT = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
LAT = Bipartite(Z[:1], XT[:1])
RED = "a red circle"


def _pil(mode, value):
    return Image.fromarray(np.full((16, 16), value, dtype={"F": np.float32, "I": np.int32}[mode]), mode)


class Bad(NamedTuple):
    name: str
    call: Callable            # call(clip, evaluator, pipe)
    error: type
    arg: str                  # the message names the argument ...
    fix: str                  # ... and what to change (a regex)


BAD = [
    # ---- images: shapes, types, values, sizes (CLIP, evaluator and pipeline share one converter)
    Bad("NaN image", lambda c, e, p: c.encode_image(NAN), ValueError, "images", "nan_to_num"),
    Bad("empty image batch", lambda c, e, p: c.encode_image(torch.zeros(0, 3, 64, 64)), ValueError, "images",
        "at least one image"),
    Bad("huge image batch", lambda c, e, p: c.encode_image(HUGE), ValueError, "images", "at most 87381"),
    Bad("int64 pixels", lambda c, e, p: c.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.int64)), TypeError,
        "images", "uint8 or floating.*x / 65535"),
    Bad("bool pixels", lambda c, e, p: c.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.bool)), TypeError,
        "images", r"give uint8 \(0..255\) or float"),
    Bad("complex pixels", lambda c, e, p: c.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.complex64)),
        TypeError, "images", "uint8 or floating"),
    Bad("pixels in 0..255 as float", lambda c, e, p: c.encode_image(X * 255), ValueError, "images", r"x / 255"),
    Bad("pixels in [-1, 1]", lambda c, e, p: c.encode_image(X * 2 - 1), ValueError, "images", r"\(x \+ 1\) / 2"),
    Bad("two channels", lambda c, e, p: c.encode_image(torch.rand(1, 2, 64, 64)), ValueError, "images",
        r"\[N, 3, H, W\]"),
    Bad("five dimensions", lambda c, e, p: c.encode_image(torch.rand(1, 1, 3, 64, 64)), ValueError, "images",
        r"\[N, 3, H, W\]"),
    Bad("a grey image without channel axis", lambda c, e, p: c.encode_image(torch.rand(64, 64)), ValueError,
        "images", r"x\[None\]"),
    Bad("a file name", lambda c, e, p: c.encode_image("cat.png"), TypeError, "images", r"PIL\.Image\.open"),
    Bad("a Path", lambda c, e, p: c.encode_image(Path("cat.png")), TypeError, "images", r"PIL\.Image\.open"),
    Bad("None as images", lambda c, e, p: c.encode_image(None), TypeError, "images", "tensor, numpy array or PIL"),
    Bad("a dict as images", lambda c, e, p: c.encode_image({"image": X}), TypeError, "images", "tensor, numpy"),
    Bad("images of mixed sizes", lambda c, e, p: c.encode_image([X[0], X[0, :, :32, :32]]), ValueError, "images",
        "resize them to one size"),
    Bad("empty list of images", lambda c, e, p: c.encode_image([]), ValueError, "images", "at least one image"),
    Bad("None inside a list", lambda c, e, p: c.encode_image([X[0], None]), TypeError, "images[1]",
        "tensor, numpy array or PIL image"),
    Bad("numpy object array", lambda c, e, p: c.encode_image(np.array([np.zeros((8, 8, 3)), np.zeros((9, 9, 3))],
                                                                       dtype=object)),
        TypeError, "images", "uint8 or float array"),
    Bad("numpy int32 array", lambda c, e, p: c.encode_image(np.zeros((1, 64, 64, 3), np.int32)), TypeError,
        "images", "x / 65535"),
    Bad("numpy uint16 array", lambda c, e, p: c.encode_image(np.zeros((1, 64, 64, 3), np.uint16)), TypeError,
        "images", "x / 65535"),
    Bad("numpy NaN array", lambda c, e, p: c.encode_image(np.full((64, 64, 3), np.nan, np.float32)), ValueError,
        "images", "nan_to_num"),
    Bad("numpy broadcast giant", lambda c, e, p: c.encode_image(np.broadcast_to(np.zeros((1, 3, 64, 64), np.uint8),
                                                                                 (10**6, 3, 64, 64))),
        ValueError, "images", "at most"),
    Bad("list of 100k images", lambda c, e, p: c.encode_image([X[0]] * 100_000), ValueError, "images",
        "pass fewer at a time"),
    Bad("PIL float image in 0..255", lambda c, e, p: c.encode_image(_pil("F", 200.0)), ValueError, "mode 'F'",
        r"rescale it.*np\.asarray\(img\) / 255"),
    Bad("PIL float image with NaN", lambda c, e, p: c.encode_image(_pil("F", np.nan)), ValueError, "mode 'F'",
        "replace them"),
    Bad("PIL 32-bit image, negative", lambda c, e, p: c.encode_image(_pil("I", -5)), ValueError, "mode 'I'",
        "rescale it to 0..65535"),
    Bad("PIL 32-bit image beyond 16 bits", lambda c, e, p: c.encode_image(_pil("I", 70_000)), ValueError, "mode 'I'",
        "rescale it to 0..65535"),
    Bad("a 1 x 1 image", lambda c, e, p: c.encode_image(torch.rand(1, 3, 1, 1)), ValueError, "images",
        "at least 8 x 8"),
    Bad("a 64 x 4 strip", lambda c, e, p: c.encode_image(torch.rand(1, 3, 64, 4)), ValueError, "images",
        "at least 8 x 8"),
    Bad("batch_size 0 to encode_image", lambda c, e, p: c.encode_image(X, batch_size=0), ValueError, "batch_size",
        ">= 1"),
    Bad("batch_size as text", lambda c, e, p: c.encode_image(X, batch_size="8"), TypeError, "batch_size",
        "integer >= 1"),
    Bad("NaN image to the evaluator", lambda c, e, p: e.predict(NAN), ValueError, "images", "nan_to_num"),
    Bad("huge batch to the evaluator", lambda c, e, p: e.predict(HUGE), ValueError, "images", "at most"),
    Bad("empty batch to the evaluator", lambda c, e, p: e.predict(torch.zeros(0, 3, 64, 64)), ValueError, "images",
        "at least one"),

    # ---- captions: CLIP's text side and the pipeline's
    Bad("encode_text(None)", lambda c, e, p: c.encode_text(None), TypeError, "captions",
        "a string or a list of strings"),
    Bad("encode_text(int)", lambda c, e, p: c.encode_text(3), TypeError, "captions", "a string or a list of strings"),
    Bad("encode_text(bytes)", lambda c, e, p: c.encode_text(b"a red circle"), TypeError, "captions",
        r"decode\('utf-8'\)"),
    Bad('encode_text("")', lambda c, e, p: c.encode_text(""), ValueError, "captions[0]", "describe the image"),
    Bad("encode_text([])", lambda c, e, p: c.encode_text([]), ValueError, "captions", "at least one caption"),
    Bad("caption is None", lambda c, e, p: c.encode_text([None]), TypeError, "captions[0]", "strings"),
    Bad("caption is bytes", lambda c, e, p: c.encode_text([RED, b"x"]), TypeError, "captions[1]", "decode"),
    Bad("captions as a set", lambda c, e, p: c.encode_text({RED}), TypeError, "captions", "list of strings"),
    Bad("captions as a dict", lambda c, e, p: c.encode_text({RED: 1}), TypeError, "captions", "list of strings"),
    Bad("batch_size 0 to encode_text", lambda c, e, p: c.encode_text(RED, batch_size=0), ValueError, "batch_size",
        ">= 1"),
    Bad("tokenize(None)", lambda c, e, p: c.tokenize(None), TypeError, "captions", "list of strings"),
    Bad("no zero-shot labels", lambda c, e, p: c.zero_shot(X, []), ValueError, "candidates", "at least one caption"),
    Bad("an empty zero-shot label", lambda c, e, p: c.zero_shot(X, [RED, " "]), ValueError, "candidates[1]",
        "describe the image"),
    Bad("generate(None)", lambda c, e, p: p.generate(None), TypeError, "captions", "a string or a list of strings"),
    Bad("generate(bytes)", lambda c, e, p: p.generate(b"a red circle"), TypeError, "captions", "decode"),
    Bad("generate(int)", lambda c, e, p: p.generate(7), TypeError, "captions", "a string or a list of strings"),
    Bad("empty caption", lambda c, e, p: p.generate([" "]), ValueError, "captions[0]", "describe the image"),
    Bad("no caption", lambda c, e, p: p.generate([]), ValueError, "captions", "at least one caption"),
    Bad("a number among the captions", lambda c, e, p: p.generate([RED, 5]), TypeError, "captions[1]", "strings"),
    Bad("huge caption batch", lambda c, e, p: p.generate([RED] * 100_000), ValueError, "captions", "chunks of at most"),
    Bad("endless caption stream", lambda c, e, p: p.generate(itertools.repeat(RED)), ValueError, "captions",
        "chunks of at most"),
    Bad("too long a caption", lambda c, e, p: p.generate(["a red circle " * 20]), ValueError, "captions[0]",
        "shorten it"),

    # ---- generate's settings, each checked before the prior runs
    Bad("unknown prior", lambda c, e, p: p.generate([RED], prior="difusion"), ValueError, "prior", "choose one of"),
    Bad("seed as text", lambda c, e, p: p.generate([RED], seed="zero"), TypeError, "seed", "integer in"),
    Bad("seed as a float", lambda c, e, p: p.generate([RED], seed=1.5), TypeError, "seed", "integer in"),
    Bad("seed as a bool", lambda c, e, p: p.generate([RED], seed=True), TypeError, "seed", "integer in"),
    Bad("seed beyond 64 bits", lambda c, e, p: p.generate([RED], seed=2**64), ValueError, "seed", r"2\*\*63 - 1"),
    Bad("negative seed", lambda c, e, p: p.generate([RED], seed=-1), ValueError, "seed", r"\[0, 9223372036854775807\]"),
    Bad("negative guidance", lambda c, e, p: p.generate([RED], decoder_guidance=-1.0), ValueError, "decoder_guidance",
        ">= 0"),
    Bad("NaN guidance", lambda c, e, p: p.generate([RED], decoder_guidance=float("nan")), ValueError,
        "decoder_guidance", "finite number"),
    Bad("guidance as text", lambda c, e, p: p.generate([RED], decoder_guidance="3"), TypeError, "decoder_guidance",
        "number >= 0"),
    Bad("infinite prior guidance", lambda c, e, p: p.generate([RED], prior_guidance=float("inf")), ValueError,
        "prior_guidance", "finite number"),
    Bad("zero steps", lambda c, e, p: p.generate([RED], decoder_steps=0), ValueError, "decoder_steps", r"\[1, 1000\]"),
    Bad("more steps than the schedule", lambda c, e, p: p.generate([RED], decoder_steps=5000), ValueError,
        "decoder_steps", "the schedule has 1000 steps"),
    Bad("fractional steps", lambda c, e, p: p.generate([RED], decoder_steps=2.5), TypeError, "decoder_steps",
        "integer in"),
    Bad("zero prior steps", lambda c, e, p: p.generate([RED], prior_steps=0), ValueError, "prior_steps",
        r"\[1, 1000\]"),
    Bad("a million prior steps", lambda c, e, p: p.generate([RED], prior_steps=10**6), ValueError, "prior_steps",
        r"\[1, 1000\]"),
    Bad("one upsampler step count for two stages", lambda c, e, p: p.generate([RED], upsampler_steps=(4,)),
        ValueError, "upsampler_steps", "one step count per upsampler: 2"),
    Bad("three upsampler step counts", lambda c, e, p: p.generate([RED], upsampler_steps=(4, 2, 1)), ValueError,
        "upsampler_steps", "one step count per upsampler"),
    Bad("zero upsampler steps", lambda c, e, p: p.generate([RED], upsampler_steps=(4, 0)), ValueError,
        "upsampler_steps[1]", r"\[1, 1000\]"),
    Bad("upsampler steps as one number", lambda c, e, p: p.generate([RED], upsampler_steps=4), TypeError,
        "upsampler_steps", r"tuple of 2 step counts.*e\.g\. \("),
    Bad("NaN x_T", lambda c, e, p: p.generate([RED], x_T=torch.full((1, 3, 32, 32), float("nan"))), ValueError,
        "x_T", "finite latents"),
    Bad("x_T of the wrong shape", lambda c, e, p: p.generate([RED], x_T=torch.zeros(2, 3, 32, 32)), ValueError,
        "x_T", r"tensor \[1, 3, 32, 32\]"),
    Bad("x_T as a list", lambda c, e, p: p.generate([RED], x_T=[0.0] * 10), TypeError, "x_T",
        r"tensor \[1, 3, 32, 32\]"),
    Bad("integer x_T", lambda c, e, p: p.generate([RED], x_T=torch.zeros(1, 3, 32, 32, dtype=torch.long)), TypeError,
        "x_T", r"\.float\(\)"),
    Bad("upsample as text", lambda c, e, p: p.generate([RED], upsample="no"), TypeError, "upsample", "True or False"),
    Bad("unknown sampler", lambda c, e, p: p.generate([RED], sampler="euler"), ValueError, "sampler", "one of"),
    Bad("sample_z_i from a missing prior", lambda c, e, p: p.sample_z_i([RED], prior="z_t"), ValueError, "prior",
        "this stack has"),

    # ---- decode: z_i, its settings and captions
    Bad("integer z_i", lambda c, e, p: p.decode(torch.zeros(1, 128, dtype=torch.int64)), TypeError, "z_i",
        r"\.float\(\)"),
    Bad("one z_i without batch axis", lambda c, e, p: p.decode(torch.zeros(128)), ValueError, "z_i", r"z_i\[None\]"),
    Bad("huge z_i batch", lambda c, e, p: p.decode(torch.zeros(1, 128).expand(10**6, 128)), ValueError, "z_i",
        "chunks of at most"),
    Bad("NaN z_i", lambda c, e, p: p.decode(torch.full((1, 128), float("nan"))), ValueError, "z_i",
        "finite CLIP embeddings"),
    Bad("z_i of another width", lambda c, e, p: p.decode(torch.ones(1, 64)), ValueError, "z_i", "another CLIP"),
    Bad("empty z_i", lambda c, e, p: p.decode(torch.ones(0, 128)), ValueError, "z_i", "at least one embedding"),
    Bad("z_i as a list", lambda c, e, p: p.decode(Z.tolist()), TypeError, "z_i", r"encode_image\(images\)"),
    Bad("an all-zero z_i", lambda c, e, p: p.decode(torch.zeros(1, 128)), ValueError, "z_i", "prior='caption'"),
    Bad("eta above 1", lambda c, e, p: p.decode(Z, eta=2.0), ValueError, "eta", r"\[0, 1\]"),
    Bad("NaN eta", lambda c, e, p: p.decode(Z, eta=float("nan")), ValueError, "eta", r"finite number in \[0, 1\]"),
    Bad("eta as text", lambda c, e, p: p.decode(Z, eta="0"), TypeError, "eta", r"number in \[0, 1\]"),
    Bad("zero decode steps", lambda c, e, p: p.decode(Z, steps=0), ValueError, "steps", r"\[1, 1000\]"),
    Bad("negative decode guidance", lambda c, e, p: p.decode(Z, guidance=-2), ValueError, "guidance", ">= 0"),
    Bad("NaN caption guidance", lambda c, e, p: p.decode(Z, guidance_text=float("nan")), ValueError,
        "guidance_text", "finite number"),
    Bad("more captions than embeddings", lambda c, e, p: p.decode(Z, captions=[RED] * 3), ValueError, "captions",
        r"one per embedding \(2\)"),
    Bad("an empty caption to decode", lambda c, e, p: p.decode(Z, captions=[RED, ""]), ValueError, "captions[1]",
        "describe the image"),
    Bad("eta with DPM-Solver++", lambda c, e, p: p.decode(Z, eta=0.5, sampler="dpm++"), ValueError, "eta",
        "sampler='ddim'"),
    Bad("clip_x0 as text", lambda c, e, p: p.decode(Z, clip_x0="yes"), TypeError, "clip_x0", "True or False"),
    Bad("upsample as a number", lambda c, e, p: p.decode(Z, upsample=2), TypeError, "upsample", "True or False"),
    Bad("x_T beside fewer z_i", lambda c, e, p: p.decode(Z[:1], x_T=XT), ValueError, "x_T", r"\[1, 3, 32, 32\]"),

    # ---- upsample, invert, encode
    Bad("empty batch to upsample", lambda c, e, p: p.upsample(torch.zeros(0, 3, 32, 32)), ValueError, "images",
        "at least one"),
    Bad("one step count to upsample", lambda c, e, p: p.upsample(X, steps=(1,)), ValueError, "steps",
        "one step count per upsampler"),
    Bad("negative seed to upsample", lambda c, e, p: p.upsample(X, seed=-5), ValueError, "seed", "integer in"),
    Bad("NaN image to invert", lambda c, e, p: p.invert(NAN), ValueError, "images", "nan_to_num"),
    Bad("empty batch to invert", lambda c, e, p: p.invert(torch.zeros(0, 3, 64, 64)), ValueError, "images",
        "at least one"),
    Bad("huge batch to invert", lambda c, e, p: p.invert(torch.zeros(1, 3, 32, 32).expand(5000, 3, 32, 32)),
        ValueError, "images", "chunks of at most 1024"),
    Bad("refine=-1", lambda c, e, p: p.invert(X, refine=-1), ValueError, "refine", "0: plain DDIM inversion"),
    Bad("refine as a float", lambda c, e, p: p.invert(X, refine=1.5), TypeError, "refine", r"integer in \[0, 100\]"),
    Bad("refine as text", lambda c, e, p: p.invert(X, refine="3"), TypeError, "refine", r"integer in \[0, 100\]"),
    Bad("a million refinements", lambda c, e, p: p.invert(X, refine=10**6), ValueError, "refine", r"\[0, 100\]"),
    Bad("zero inversion steps", lambda c, e, p: p.invert(X, steps=0), ValueError, "steps", r"\[1, 1000\]"),
    Bad("NaN inversion guidance", lambda c, e, p: p.invert(X, guidance=float("nan")), ValueError, "guidance",
        "finite number"),
    Bad("z_i for other images", lambda c, e, p: p.invert(X, z_i=Z[:1]), ValueError, "z_i", "one embedding per image"),
    Bad("refine=-1 to encode", lambda c, e, p: p.encode(X, refine=-1), ValueError, "refine", "0: plain DDIM"),

    # ---- variations
    Bad("NaN image to variations", lambda c, e, p: p.variations(NAN[:1], n=2), ValueError, "images", "nan_to_num"),
    Bad("no variations", lambda c, e, p: p.variations(latent=LAT, n=0), ValueError, "n", ">= 1"),
    Bad("fractional variations", lambda c, e, p: p.variations(latent=LAT, n=2.5), TypeError, "n", "integer >= 1"),
    Bad("a million variations", lambda c, e, p: p.variations(X[:1], n=10**6), ValueError, "images x n",
        "chunks of at most 1024"),
    Bad("eta above 1 to variations", lambda c, e, p: p.variations(latent=LAT, eta=1.5), ValueError, "eta",
        r"\[0, 1\]"),
    Bad("guidance as text to variations", lambda c, e, p: p.variations(latent=LAT, guidance="high"), TypeError,
        "guidance", "number >= 0"),
    Bad("a dict as the latent", lambda c, e, p: p.variations(latent={"z_i": Z, "x_T": XT}), TypeError, "latent",
        r"pipe\.encode\(images\)"),
    Bad("three things as the latent", lambda c, e, p: p.variations(latent=(Z, XT, XT)), TypeError, "latent",
        r"pipe\.encode\(images\)"),
    Bad("a latent without x_T", lambda c, e, p: p.variations(latent=(Z, None)), ValueError, "latent.x_T",
        r"pipe\.encode\(images\)"),
    Bad("a latent with x_T of the wrong size", lambda c, e, p: p.variations(latent=Bipartite(Z[:1], XT[:1, :, :16])),
        ValueError, "latent.x_T", r"\[1, 3, 32, 32\]"),
    Bad("a latent of another width", lambda c, e, p: p.variations(latent=Bipartite(torch.ones(1, 7), XT[:1])),
        ValueError, "latent.z_i", "another CLIP"),
    Bad("variations of nothing", lambda c, e, p: p.variations(), ValueError, "images", r"latent=pipe\.encode"),

    # ---- interpolate
    Bad("NaN image to interpolate", lambda c, e, p: p.interpolate(NAN[:1], X[1:]), ValueError, "images_a",
        "nan_to_num"),
    Bad("interpolate given one latent", lambda c, e, p: p.interpolate(latents=LAT), TypeError, "latents",
        r"a pair \(pipe\.encode\(images_a\)"),
    Bad("interpolate given a dict", lambda c, e, p: p.interpolate(latents={"a": LAT}), TypeError, "latents",
        "a pair"),
    Bad("a one-step path", lambda c, e, p: p.interpolate(X[:1], X[1:], steps=1), ValueError, "steps",
        "the two ends included"),
    Bad("a million-step path", lambda c, e, p: p.interpolate(X[:1], X[1:], steps=10**6), ValueError,
        "pairs x steps", "chunks of at most"),
    Bad("unknown x_T mode", lambda c, e, p: p.interpolate(X[:1], X[1:], x_T="lerp"), ValueError, "x_T", "one of"),
    Bad("interpolate without images_b", lambda c, e, p: p.interpolate(X[:1]), ValueError, "images_b",
        r"latents=\(pipe\.encode"),
    Bad("images that do not pair up", lambda c, e, p: p.interpolate(X, X[:1]), ValueError, "images_a and images_b",
        "pair up"),
    Bad("a bad seed to interpolate", lambda c, e, p: p.interpolate(X[:1], X[1:], seed=2**70), ValueError, "seed",
        r"2\*\*63"),

    # ---- text diffs: captions and thetas checked before any image is encoded
    Bad("text_diff with its default captions", lambda c, e, p: p.text_diff(X[:1]), TypeError, "from_caption",
        r"e\.g\. 'a red circle'"),
    Bad("text_diff without to_caption", lambda c, e, p: p.text_diff(X[:1], RED), TypeError, "to_caption",
        r"e\.g\. 'a blue circle'"),
    Bad("empty caption to a text diff", lambda c, e, p: p.text_diff(X[:1], "", "a blue circle"), ValueError,
        "from_caption[0]", "describe the image"),
    Bad("a number as from_caption", lambda c, e, p: p.text_diff(X[:1], 5, "a blue circle"), TypeError,
        "from_caption", "list of strings"),
    Bad("a caption naming nothing of the world", lambda c, e, p: p.text_diff(X[:1], RED, "a cirle"), ValueError,
        "to_caption", r"names no shape.*did you mean 'circle'"),
    Bad("a caption naming nothing of the world at all", lambda c, e, p: p.text_diff(X[:1], "a dragon", RED),
        ValueError, "from_caption", r"shapes: circle, square"),
    Bad("the same caption twice", lambda c, e, p: p.text_diff(X[:1], RED, " A red circle"), ValueError,
        "to_caption", "two different descriptions"),
    Bad("one caption for two images too many", lambda c, e, p: p.text_diff(X[:1], [RED, RED], "a blue circle"),
        ValueError, "from_caption", r"one per image \(1\)"),
    Bad("theta above 1", lambda c, e, p: p.text_diff(X[:1], RED, "a blue circle", thetas=[0.2, 1.5]), ValueError,
        "thetas[1]", r"\[0, 1\]"),
    Bad("thetas as text", lambda c, e, p: p.text_diff(X[:1], RED, "a blue circle", thetas="0.5"), TypeError,
        "thetas", r"list of numbers in \[0, 1\]"),
    Bad("no thetas", lambda c, e, p: p.text_diff(X[:1], RED, "a blue circle", thetas=[]), ValueError, "thetas",
        r"at least one value in \[0, 1\]"),
    Bad("NaN theta", lambda c, e, p: p.text_diff(X[:1], RED, "a blue circle", thetas=float("nan")), ValueError,
        "thetas[0]", "finite number"),
    Bad("two thousand thetas", lambda c, e, p: p.text_diff(X[:1], RED, "a blue circle", thetas=[0.5] * 2000),
        ValueError, "images x thetas", "chunks of at most"),
    Bad("a text diff of a latent without x_T", lambda c, e, p: p.text_diff(None, RED, "a blue circle",
                                                                          latent=(Z[:1], None)),
        ValueError, "latent.x_T", r"pipe\.encode"),

    # ---- slerp and the latent geometry
    Bad("slerp of NaN", lambda c, e, p: slerp(torch.ones(1, 4), torch.full((1, 4), float("nan")), 0.5), ValueError,
        "vectors", "NaN"),
    Bad("slerp of mismatched widths", lambda c, e, p: slerp(torch.ones(2, 4), torch.ones(2, 5), 0.5), ValueError,
        "a [2, 4] and b [2, 5]", "same shape"),
    Bad("slerp of integers", lambda c, e, p: slerp(torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4), 0.5),
        TypeError, "a and b", r"\.float\(\)"),
    Bad("slerp of lists", lambda c, e, p: slerp([1.0, 0.0], [0.0, 1.0], 0.5), TypeError, "a and b",
        r"torch\.as_tensor"),
    Bad("slerp of scalars", lambda c, e, p: slerp(torch.tensor(1.0), torch.tensor(2.0), 0.5), ValueError, "a and b",
        r"vectors \[\.\.\., D\]"),
    Bad("slerp theta as text", lambda c, e, p: slerp(Z[:1], Z[1:], "0.5"), TypeError, "theta", r"number in \[0, 1\]"),
    Bad("slerp theta None", lambda c, e, p: slerp(Z[:1], Z[1:], None), TypeError, "theta", r"number in \[0, 1\]"),
    Bad("slerp thetas of the wrong length", lambda c, e, p: slerp(Z, Z.flip(0), torch.tensor([0.1, 0.2, 0.3])),
        ValueError, "theta", "one per vector"),
    Bad("slerp theta past the end", lambda c, e, p: slerp(Z[:1], Z[1:], 1.5), ValueError, "theta",
        "extrapolate=True"),
    Bad("slerp theta before the start", lambda c, e, p: slerp(Z[:1], Z[1:], torch.tensor([-0.1])), ValueError,
        "theta", "extrapolate=True"),
    Bad("slerp theta NaN", lambda c, e, p: slerp(Z[:1], Z[1:], float("nan")), ValueError, "theta",
        r"numbers in \[0, 1\]"),
    Bad("slerp thetas holding text", lambda c, e, p: slerp(Z[:1], Z[1:], [0.1, "x"]), TypeError, "theta",
        "list of numbers"),
    Bad("a text-diff direction of lists", lambda c, e, p: text_diff_direction([1.0], [0.0]), TypeError, "a and b",
        r"torch\.as_tensor"),
    Bad("PCA of integers", lambda c, e, p: EmbeddingPCA.fit(torch.ones(4, 3, dtype=torch.long)), TypeError,
        "PCA", "floating-point tensor"),
    Bad("PCA components as a float", lambda c, e, p: EmbeddingPCA.fit(Z).reconstruct(Z, 1.5), TypeError, "k",
        "principal components"),

    # ---- loaders: names, paths, formats (nothing is loaded on the way to the error)
    Bad("load_clip(None)", lambda c, e, p: load_clip(None), TypeError, "name", r"'shapes'.*\.safetensors"),
    Bad("load_clip(int)", lambda c, e, p: load_clip(42), TypeError, "name", r"'shapes'"),
    Bad("load_clip of a .pt path", lambda c, e, p: load_clip("model.pt"), CheckpointError, "model.pt",
        r"safetensors\.torch\.save_file"),
    Bad("load_clip of a missing .safetensors", lambda c, e, p: load_clip("missing.safetensors"), FileNotFoundError,
        "missing.safetensors", "check the path"),
    Bad("load_clip of an unknown name", lambda c, e, p: load_clip("no-such-clip"), KeyError, "no-such-clip",
        r"Shipped: \['shapes', 'emoji'\]"),
    Bad("an open_clip model without its tag", lambda c, e, p: load_clip("ViT-B-32"), ValueError, "pretrained",
        "e.g."),
    Bad("download as text", lambda c, e, p: load_clip("shapes", download="yes"), TypeError, "download",
        "True or False"),
    Bad("load_decoder of a .pt path", lambda c, e, p: load_decoder("x.pt"), CheckpointError, "load_decoder",
        r"safetensors\.torch\.save_file"),
    Bad("load_decoder of another folder", lambda c, e, p: load_decoder("/tmp/nowhere/decoder"), FileNotFoundError,
        "load_decoder", r"must end in \.safetensors"),
    Bad("load_decoder of an unknown name", lambda c, e, p: load_decoder("base64"), KeyError, "load_decoder",
        r"known: \['emoji', 'shapes', 'shapes_inpaint'\]"),
    Bad("load_upsampler of an unknown stage", lambda c, e, p: load_upsampler("up512"), KeyError, "up512",
        r"known: \['emoji_up64', 'up128', 'up64'\]"),
    Bad("load_prior of a .bin path", lambda c, e, p: load_prior("prior.bin"), CheckpointError, "load_prior",
        "save_file"),
    Bad("load_prior(None)", lambda c, e, p: load_prior(None), TypeError, "load_prior",
        r"\['autoregressive', 'diffusion', 'emoji_autoregressive', 'emoji_diffusion'\]\) "
        r"or the path of a \.safetensors"),
    Bad("load_decoder(None)", lambda c, e, p: load_decoder(None), TypeError, "load_decoder",
        r"\['emoji', 'shapes', 'shapes_inpaint'\]\) or the path of a \.safetensors"),
    Bad("load_upsampler of a number", lambda c, e, p: load_upsampler(64), TypeError, "load_upsampler",
        r"\['emoji_up64', 'up128', 'up64'\]\) or the path"),
    Bad("load_evaluator(None)", lambda c, e, p: load_evaluator(None), TypeError, "load_evaluator",
        r"\['emoji', 'shapes'\]\) or the path of a \.safetensors"),
    Bad("load_evaluator of a .pt path", lambda c, e, p: load_evaluator("evaluator.pt"), CheckpointError,
        "load_evaluator", "save_file"),
    Bad("load_evaluator of an unknown name", lambda c, e, p: load_evaluator("paintings"), KeyError, "load_evaluator",
        r"known: \['emoji', 'shapes'\]"),
    Bad("load_checkpoint(None)", lambda c, e, p: load_checkpoint(None, "clip"), TypeError, "checkpoint path",
        r"\.safetensors file"),
    Bad("load_checkpoint of a folder", lambda c, e, p: load_checkpoint(Path(__file__).parent, "clip"),
        CheckpointError, "is a folder", r"\.safetensors file inside it"),
    Bad("load_checkpoint of a missing file", lambda c, e, p: load_checkpoint("gone.safetensors", "clip"),
        FileNotFoundError, "gone.safetensors", "check the path"),
    Bad("an unknown stack", lambda c, e, p: load_unclip("emojis"), KeyError, "emojis",
        r"did you mean: 'emoji'.*known: \['shapes', 'emoji'\]"),
    Bad("an unknown prior to load", lambda c, e, p: load_unclip(priors=("difusion",)), ValueError, "priors",
        "choose from"),
    Bad("priors as a number", lambda c, e, p: load_unclip(priors=5), TypeError, "priors", "tuple of prior names"),

    # ---- the world
    Bad("a billion scenes", lambda c, e, p: ShapesWorld().sample(10**9), ValueError, "images", "sample at most"),
    Bad("zero resolution", lambda c, e, p: ShapesWorld().sample(1, resolution=0), ValueError, "resolution",
        "at least 8 pixels"),
    Bad("no scenes to render", lambda c, e, p: ShapesWorld().render([]), ValueError, "render",
        "at least one attribute dict"),
    Bad("unknown shape in a caption", lambda c, e, p: ShapesWorld.caption({"shape": "círculo"}), ValueError,
        "shape", "must be one of"),
    Bad("a negative world seed", lambda c, e, p: ShapesWorld(seed=-1), ValueError, "seed", "non-negative integer"),
    Bad("a world seed as text", lambda c, e, p: ShapesWorld(seed="a"), TypeError, "seed", "integer >= 0"),
    Bad("a number of scenes as text", lambda c, e, p: ShapesWorld().sample("5"), TypeError, "n", "integer >= 1"),
    Bad("a word probability of 2", lambda c, e, p: ShapesWorld().sample(2, word_prob=2), ValueError, "word_prob",
        r"\[0, 1\]"),
]


@pytest.fixture
def model_calls(clip, evaluator, pipe):
    """Counts the forward passes of every model module while a test runs."""
    calls = []
    roots = [clip, evaluator.net, pipe.clip, pipe.decoder, *pipe.upsamplers, *pipe.priors.values()]
    handles = [m.register_forward_pre_hook(lambda module, args: calls.append(type(module).__name__))
               for root in roots for m in root.modules()]
    yield calls
    for h in handles:
        h.remove()


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KiB


def test_the_sweep_covers_a_hundred_kinds(clip, model_calls):
    assert len(BAD) >= 100 and len({b.name for b in BAD}) == len(BAD)
    clip.encode_image(X[:1])
    assert model_calls, "the forward-pass counter saw nothing: the 'before any work' checks would prove nothing"


@pytest.mark.parametrize("case", BAD, ids=[b.name for b in BAD])
def test_bad_input_gives_a_clear_error_before_any_work(clip, evaluator, pipe, model_calls, case):
    before = _peak_rss()
    with pytest.raises(case.error) as info:
        case.call(clip, evaluator, pipe)
    message = info.value.args[0] if isinstance(info.value, KeyError) else str(info.value)
    assert case.arg in message, f"the message does not name {case.arg!r}: {message}"
    assert re.search(case.fix, message), f"the message does not say what to change ({case.fix!r}): {message}"
    assert "unclip_lib" in str(info.traceback[-1].path)    # raised by our checks, not deep inside torch
    assert model_calls == [], f"a model ran before the error: {model_calls[:3]}"
    assert _peak_rss() - before < 2**30                    # and nothing large was allocated on the way


def test_unusual_but_valid_input_works(clip, evaluator, pipe):
    """Unicode captions, other PIL modes (CMYK, 16-bit, float, RGBA, palette, grey + alpha),
    half precision and small images are accepted and converted."""
    z = clip.encode_text(["un cercle rouge 🎨 红色的圆", "a red circle"])
    assert z.shape == (2, 128) and torch.isfinite(z).all()
    assert pipe.generate(["a red circle, très rouge ✓"], upsample=False).shape == (1, 3, 32, 32)
    word = ShapesWorld().render([{**RULE, "word": "ünï"}])
    assert word.shape == (1, 3, 64, 64)
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)   # 16-bit: 0 .. 65520
    sixteen = clip.encode_image(Image.fromarray(ramp))
    assert torch.allclose(sixteen, clip.encode_image(torch.from_numpy(ramp / 65535.0).float()[None, None]), atol=1e-5)
    for image in (Image.new("CMYK", (64, 64)), Image.new("F", (64, 64), 0.5), Image.new("RGBA", (64, 64)),
                  Image.new("P", (64, 64)), Image.new("LA", (64, 64)), X.half(), torch.rand(1, 3, 8, 8)):
        assert clip.encode_image(image).shape[-1] == 128
    assert len(evaluator.predict((X * 255).round().to(torch.uint8))) == 2


def test_what_the_documented_conversions_do(clip, pipe):
    """The choices the bad-input sweep relies on, shown: non-square images are centre-cropped
    (never stretched), a [3, H, W] tensor is one RGB image, z_i far from unit length is
    normalised with a warning, and slerp goes past its ends only when asked."""
    wide = torch.cat([torch.zeros(1, 3, 64, 16), X[:1], torch.ones(1, 3, 64, 16)], dim=-1)   # [1, 3, 64, 96]
    assert torch.equal(resize(wide, 32), resize(X[:1], 32))
    assert torch.allclose(clip.encode_image(wide), clip.encode_image(X[:1]), atol=1e-6)
    assert as_image_batch(torch.rand(3, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.warns(UserWarning, match="not unit vectors"):
        scaled = pipe.decode(100 * Z[:1], steps=2, upsample=False)
    assert torch.allclose(scaled, pipe.decode(Z[:1], steps=2, upsample=False), atol=1e-4)
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(slerp(a, b, 2.0, extrapolate=True), torch.tensor([[-1.0, 0.0]]), atol=1e-6)


# ----------------------------------------------------------------------------- integrity

def _flip_a_tensor_byte(path: Path) -> None:
    """Change one byte inside the tensor data of a safetensors file (past its JSON header)."""
    raw = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    raw[header + (len(raw) - header) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def test_every_shipped_file_matches_its_pin():
    pins = read_pins()
    assert sorted(pins) == sorted(f"{stem}.safetensors" for _, stem in SHIPPED.values()), \
        "data/SHA256SUMS must list exactly the shipped files: run `python scripts/pin_weights.py`"
    for name, digest in pins.items():
        assert file_sha256(data_dir() / name) == digest, (
            f"data/{name} changed since it was pinned: if you replaced it on purpose (retrained it), run "
            f"`python scripts/pin_weights.py` and commit data/SHA256SUMS; else `git checkout data/{name}`")


def test_the_pin_script_checks_and_rewrites_the_pins(tmp_path):
    path = Path(__file__).parents[1] / "scripts" / "pin_weights.py"
    spec = importlib.util.spec_from_file_location("pin_weights", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0                     # the repository's pins and .json twins hold
    for kind, stem in SHIPPED.values():                                   # tiny stand-in checkpoints
        save_checkpoint(tmp_path / f"{stem}.safetensors", {"w": torch.zeros(1)}, kind, {"stem": stem})
    assert script.main(["--check", "--data", str(tmp_path)]) == 1         # nothing pinned there yet
    assert script.main(["--data", str(tmp_path)]) == 0
    assert script.main(["--check", "--data", str(tmp_path)]) == 0
    clip_file = tmp_path / "clip_shapes.safetensors"
    assert read_pins(tmp_path)[clip_file.name] == hashlib.sha256(clip_file.read_bytes()).hexdigest()
    # a checkpoint copied into place beside an older run's .json: the check names it, pinning rewrites it
    twin = clip_file.with_suffix(".json")
    twin.write_text(json.dumps({"kind": "clip", "config": {"stem": "an older run"}, "extra": {}}))
    assert script.main(["--check", "--data", str(tmp_path)]) == 1
    assert script.main(["--data", str(tmp_path)]) == 0
    assert json.loads(twin.read_text())["config"] == {"stem": "clip_shapes"}


def test_a_changed_shipped_file_is_refused_naming_how_to_restore_it(tmp_path, monkeypatch):
    name = "evaluator_shapes.safetensors"
    shutil.copy(data_dir() / name, tmp_path / name)
    monkeypatch.setenv("UNCLIP_LAB_DATA", str(tmp_path))
    with pytest.raises(CheckpointError, match="pin_weights.py"):      # no pins file beside it
        load_evaluator("shapes")
    shutil.copy(Path(__file__).parents[1] / "data" / "SHA256SUMS", tmp_path / "SHA256SUMS")
    assert len(load_evaluator("shapes").predict(X)) == 2               # the pinned copy loads
    _flip_a_tensor_byte(tmp_path / name)
    with pytest.raises(CheckpointError) as info:
        load_evaluator("shapes")
    message = str(info.value)
    for part in (name, "pinned sha256", "git checkout", "unclip-lab train evaluator", "pin_weights.py"):
        assert part in message, message


def test_a_flipped_byte_in_a_saved_checkpoint_is_refused(tmp_path):
    path = tmp_path / "mine.safetensors"
    tensors = {"w": torch.randn(64, 64), "b": torch.arange(10)}
    save_checkpoint(path, tensors, "clip", {"width": 64})
    assert read_metadata(path)["content_sha256"] == tensor_digest(tensors)
    loaded, config, _ = load_checkpoint(path, "clip")
    assert config == {"width": 64} and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    _flip_a_tensor_byte(path)
    with pytest.raises(CheckpointError, match=r"mine\.safetensors is corrupt: its tensors do not match"):
        load_checkpoint(path, "clip")


def test_checkpoints_written_before_content_hashes_still_load(tmp_path):
    from safetensors.torch import save_file

    old = tmp_path / "old.safetensors"
    save_file({"w": torch.ones(3)}, str(old), metadata={"unclip_lab": "clip", "config": "{}", "extra": "{}"})
    tensors, _, _ = load_checkpoint(old, "clip")
    assert torch.equal(tensors["w"], torch.ones(3))
