"""The `unclip-lab` command on bad arguments: exit status 2, one line that names the
argument and the fix, no traceback, and no model loaded, because every argument and
output path is checked before the command imports torch or loads a model.

The whole table runs in this process (timed, with every loader replaced by one that
fails the test); a sample of it runs as real subprocesses, with the shipped weights
hidden so that a model load could not go unnoticed."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unclip_lib import cli

RED = "a red circle"

CLI_BAD = [  # (name, argv with {tmp} {file} {pt} {ro} placeholders, the argument named, the fix)
    # generate: the output path, checked before any image is made
    ("output folder missing", ["generate", RED, "-o", "{tmp}/missing/grid.png"], "-o/--out", r"mkdir -p .*missing"),
    ("output folder unwritable", ["generate", RED, "-o", "{ro}/grid.png"], "-o/--out", "a folder you can write to"),
    ("output is a folder", ["generate", RED, "-o", "{tmp}"], "-o/--out", "give a file name inside it"),
    ("output without extension", ["generate", RED, "-o", "{tmp}/grid"], "-o/--out", r"end it in \.png"),
    ("output of another type", ["generate", RED, "-o", "{tmp}/grid.txt"], "-o/--out", r"e\.g\. grid\.png"),
    ("output inside a file", ["generate", RED, "-o", "{file}/grid.png"], "-o/--out", "is a file, not a folder"),
    # generate: the settings
    ("zero decoder steps", ["generate", RED, "--decoder-steps", "0"], "--decoder-steps", r"\[1, 1000\]"),
    ("too many decoder steps", ["generate", RED, "--decoder-steps", "5000"], "--decoder-steps", "1000 steps"),
    ("decoder steps as text", ["generate", RED, "--decoder-steps", "abc"], "--decoder-steps", "invalid int value"),
    ("NaN guidance", ["generate", RED, "--decoder-guidance", "nan"], "--decoder-guidance", "finite number"),
    ("infinite prior guidance", ["generate", RED, "--prior-guidance", "inf"], "--prior-guidance", "finite number"),
    ("negative guidance", ["generate", RED, "--prior-guidance", "-1"], "--prior-guidance", ">= 0"),
    ("seed beyond 64 bits", ["generate", RED, "--seed", str(2**64)], "--seed", r"2\*\*63 - 1"),
    ("negative seed", ["generate", RED, "--seed", "-3"], "--seed", r"\[0, 9223372036854775807\]"),
    ("empty caption", ["generate", " "], "captions[0]", "describe the image"),
    ("no samples", ["generate", RED, "-n", "0"], "-n/--samples", r"\[1, 1024\]"),
    ("too many images", ["generate", RED, "a blue star", "-n", "600"], "-n/--samples",
     "fewer captions or a smaller -n"),
    ("unknown prior", ["generate", RED, "--prior", "difusion"], "--prior", "invalid choice"),
    ("no caption", ["generate"], "captions", "--help"),
    # train
    ("zero training steps", ["train", "clip", "--steps", "0"], "--steps", ">= 1"),
    ("NaN learning rate", ["train", "clip", "--lr", "nan"], "--lr", "learning rate such as 1e-3"),
    ("zero learning rate", ["train", "evaluator", "--lr", "0"], "--lr", "> 0"),
    ("zero batch", ["train", "prior", "--kind", "diffusion", "--batch-size", "0"], "--batch-size", ">= 1"),
    ("zero threads", ["train", "clip", "--threads", "0"], "--threads", ">= 1"),
    ("export to a .pt", ["train", "decoder", "--export", "{tmp}/decoder.pt"], "--export", r"end it in \.safetensors"),
    ("export into a file", ["train", "decoder", "--export", "{file}/d.safetensors"], "--export", "not a folder"),
    ("missing init", ["train", "decoder", "--init", "{tmp}/nope.safetensors"], "--init", "does not exist"),
    ("a pickle as init", ["train", "upsampler", "--stage", "up64", "--init", "{pt}"], "--init",
     r"safetensors\.torch\.save_file"),
    ("missing cache", ["train", "prior", "--kind", "diffusion", "--cache", "{tmp}/no-cache"], "--cache",
     "does not exist"),
    ("unknown device", ["train", "clip", "--device", "gpu"], "--device", "cuda:N"),
    ("run folder is a file", ["train", "evaluator", "--run-dir", "{file}"], "--run-dir", "give a folder"),
    ("negative validation", ["train", "decoder", "--validate", "-1"], "--validate", "0: no validation"),
    ("upsampler without its stage", ["train", "upsampler"], "--stage", "required"),
    # cache and demo
    ("missing source", ["cache", "{tmp}/photos", "{tmp}/cache"], "source", "does not exist"),
    ("cache into a file", ["cache", "{tmp}", "{file}"], "out", "give a folder"),
    ("tiny cached images", ["cache", "{tmp}", "{tmp}/cache", "--images", "4"], "--images", r"\[8, 1024\]"),
    ("a pickle as the cache's CLIP", ["cache", "{tmp}", "{tmp}/cache", "--clip", "{pt}"], "--clip", r"\.safetensors"),
    ("zero shard size", ["cache", "{tmp}", "{tmp}/cache", "--shard-size", "0"], "--shard-size", ">= 1"),
    ("demo into a file", ["demo", "--out", "{file}"], "--out", "give a folder"),
    ("demo seed as text", ["demo", "--seed", "x"], "--seed", "invalid int value"),
    ("no command", [], "command", "--help"),
]
# run as real processes too: one of each kind
IN_SUBPROCESS = ["output is a folder", "output without extension", "NaN guidance", "seed beyond 64 bits",
                 "decoder steps as text", "a pickle as init"]


@pytest.fixture
def places(tmp_path):
    """The paths the table's placeholders stand for."""
    (tmp_path / "notes.txt").write_text("not a folder")
    (tmp_path / "weights.pt").write_bytes(pickle.dumps({"w": [0.0]}))
    return {"tmp": str(tmp_path), "file": str(tmp_path / "notes.txt"), "pt": str(tmp_path / "weights.pt"),
            "ro": str(_unwritable_folder(tmp_path))}


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    if Path("/proc").is_dir():          # root may write anywhere, but not in /proc
        return Path("/proc")
    pytest.skip("no folder this user cannot write to")


def _argv(argv: list[str], places: dict) -> list[str]:
    return [a.format(**places) for a in argv]


@pytest.fixture
def no_models(monkeypatch):
    """Every way the commands load a model or start work fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded or work started before the arguments were checked")

    for target in ("unclip_lib.pipeline.load_unclip", "unclip_lib.clip.load_clip", "unclip_lib.demo.make_demo",
                   "unclip_lib.train.train_clip", "unclip_lib.train.train_evaluator", "unclip_lib.train.train_decoder",
                   "unclip_lib.train.train_upsampler", "unclip_lib.train.train_prior"):
        monkeypatch.setattr(target, refuse)


def _run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:         # argparse's errors exit
        code = exit_.code
    return code, capsys.readouterr().err


def _assert_one_clear_line(code: int, err: str, arg: str, fix: str) -> None:
    import re

    assert code == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert arg in err, f"the message does not name {arg!r}: {err}"
    assert re.search(fix, err), f"the message does not say what to change ({fix!r}): {err}"


@pytest.mark.parametrize("name, argv, arg, fix", CLI_BAD, ids=[c[0] for c in CLI_BAD])
def test_bad_arguments_stop_the_command_at_once(name, argv, arg, fix, places, no_models, capsys):
    code, err = _run_main(_argv(argv, places), capsys)      # no_models: nothing loaded on the way
    _assert_one_clear_line(code, err, arg, fix)
    assert not Path(places["tmp"], "missing").exists()      # nothing was created on the way


@pytest.fixture(scope="module")
def hidden_weights(tmp_path_factory):
    """An environment in which the shipped weights are not found: loading one would fail
    with another message than the one a test expects."""
    env = dict(os.environ, UNCLIP_LAB_DATA=str(tmp_path_factory.mktemp("no-weights")), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1")
    return env


@pytest.mark.parametrize("name, argv, arg, fix", [c for c in CLI_BAD if c[0] in IN_SUBPROCESS], ids=IN_SUBPROCESS)
def test_bad_arguments_in_a_real_process(name, argv, arg, fix, places, hidden_weights):
    out = subprocess.run([sys.executable, "-m", "unclip_lib.cli", *_argv(argv, places)], capture_output=True,
                         text=True, env=hidden_weights, timeout=120)
    _assert_one_clear_line(out.returncode, out.stderr, arg, fix)
    assert out.stdout == ""


def test_a_bad_argument_costs_no_more_than_starting_python(places, hidden_weights):
    """The command checks its arguments before it imports torch (the package exports its names
    lazily), so a bad one fails as fast as Python starts: checked by what the failing process
    imported, not by a clock."""
    argv = [sys.executable, "-X", "importtime", "-m", "unclip_lib.cli", "generate", RED, "-o",
            f"{places['tmp']}/missing/grid.png"]
    out = subprocess.run(argv, capture_output=True, text=True, env=hidden_weights, timeout=120)
    assert out.returncode == 2 and "mkdir -p" in out.stderr
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "unclip_lib.checks" in imported          # the checks ran (the command itself is __main__)
    assert not {"torch", "numpy", "open_clip", "unclip_lib.pipeline"} & imported


class _FakePipe:
    """Stands in for the shipped stack: records what generate() was asked."""

    def __init__(self):
        self.calls = []

    def check_captions(self, captions):
        if any(len(c) > 40 for c in captions):
            raise ValueError("captions[0] has 60 tokens but the priors read at most 32: shorten it")
        return captions

    def generate(self, captions, **kwargs):
        self.calls.append((captions, kwargs))
        return torch.zeros(len(captions), 3, 8, 8)


def test_good_arguments_reach_the_command(places, monkeypatch, capsys):
    pipe = _FakePipe()
    loaded = []
    monkeypatch.setattr("unclip_lib.pipeline.load_unclip", lambda name, priors: loaded.append((name, priors)) or pipe)
    out = Path(places["tmp"], "grid.png")
    assert cli.main(["generate", RED, "a blue star", "-n", "2", "-o", str(out), "--seed", "5",
                     "--decoder-steps", "10", "--decoder-guidance", "2.5"]) == 0
    captions, kwargs = pipe.calls[0]
    assert captions == [RED, RED, "a blue star", "a blue star"] and out.exists()
    assert kwargs["seed"] == 5 and kwargs["decoder_steps"] == 10 and kwargs["decoder_guidance"] == 2.5
    assert kwargs["decoder_caption"] is True and loaded[-1] == ("shapes", ("diffusion",))
    assert cli.main(["generate", "red apple", "-n", "1", "-o", str(out), "--world", "emoji", "--prior", "z_t",
                     "--no-decoder-caption"]) == 0
    assert pipe.calls[-1][1]["decoder_caption"] is False and loaded[-1] == ("emoji", ())
    # an error the library finds once the stack is loaded is one line too
    code, err = _run_main(["generate", "a red circle " * 5, "-o", str(out)], capsys)
    _assert_one_clear_line(code, err, "captions[0]", "shorten it")

    trained = {}
    monkeypatch.setattr("unclip_lib.train.train_upsampler",
                        lambda stage, run_dir, cfg, **kw: trained.update(stage=stage, run_dir=run_dir, cfg=cfg, **kw))
    export = Path(places["tmp"], "new", "up64.safetensors")            # its folder is created by the export
    assert cli.main(["train", "upsampler", "--stage", "up64", "--steps", "7", "--export", str(export)]) == 0
    assert trained["stage"] == "up64" and trained["cfg"].steps == 7 and trained["export"] == str(export)
    assert trained["run_dir"] == "runs/up64"
