import pytest
import torch

from unclip_lib.checkpoints import CheckpointError, read_metadata
from unclip_lib.train import TrainConfig, fit, lr_at, run_seconds, train_clip, trained_weights


def _toy(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _batch(step):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=g)
    return x, x.sum(1, keepdim=True).sin()


def _loss(model, batch, gen):
    x, y = batch
    noise = 0.01 * torch.randn(y.shape, generator=gen)  # randomness drawn per step
    return ((model(x) - y - noise) ** 2).mean()


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_exactly(tmp_path):
    cfg = TrainConfig(steps=10, batch_size=16, lr=1e-2, warmup=2, checkpoint_every=3, ema=0.9)
    full, full_ema = fit(_toy(), _batch, _loss, cfg, tmp_path / "a", "toy", {"w": 1}, desc="a")

    def dying(step):
        if step == 7:  # killed after the checkpoint of step 6
            raise Interrupt
        return _batch(step)

    with pytest.raises(Interrupt):
        fit(_toy(), dying, _loss, cfg, tmp_path / "b", "toy", {"w": 1}, desc="b")
    assert read_metadata(tmp_path / "b" / "checkpoint.safetensors")["extra"]["step"] == 6
    resumed, resumed_ema = fit(_toy(seed=1), _batch, _loss, cfg, tmp_path / "b", "toy", {"w": 1}, desc="b")
    for p, q in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
    for p, q in zip(full_ema.state_dict().values(), resumed_ema.state_dict().values()):
        assert torch.equal(p, q)
    assert torch.equal(trained_weights(tmp_path / "a", "toy")["0.weight"], full_ema[0].weight)


def test_resume_refuses_another_config(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=16, checkpoint_every=1)
    fit(_toy(), _batch, _loss, cfg, tmp_path, "toy", {"w": 1}, desc="a")
    with pytest.raises(CheckpointError, match="another model config"):
        fit(_toy(), _batch, _loss, cfg, tmp_path, "toy", {"w": 2}, desc="a")


def test_resume_accepts_its_own_config_and_sums_the_time(tmp_path):
    # configs hold tuples (UNet channel multipliers); stored as JSON they come back as lists
    config = {"mults": (1, 2), "name": "toy"}
    fit(_toy(), _batch, _loss, TrainConfig(steps=2, checkpoint_every=1), tmp_path, "toy", config)
    first = run_seconds(tmp_path)
    fit(_toy(), _batch, _loss, TrainConfig(steps=4, checkpoint_every=1), tmp_path, "toy", config)
    assert read_metadata(tmp_path / "checkpoint.safetensors")["extra"]["step"] == 4
    assert run_seconds(tmp_path) >= first


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)


def test_clip_training_lowers_the_loss_and_exports(tmp_path):
    cfg = TrainConfig(steps=40, batch_size=32, lr=3e-3, warmup=5, checkpoint_every=40, log_every=1)
    out = tmp_path / "micro.safetensors"
    train_clip(tmp_path / "run", "micro", cfg, export=out, validate=0, workers=0)
    import json
    losses = [json.loads(l)["loss"] for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
              if "loss" in l]
    # chance level is ln(32) = 3.47; the last steps are clearly below the first ones
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.15
    assert read_metadata(out)["kind"] == "clip" and (tmp_path / "micro.json").exists()
    from unclip_lib import load_clip
    assert load_clip(str(out)).encode_text(["a red circle"]).shape == (1, 64)


def test_mixed_precision_and_device_choice(tmp_path):
    import json
    from dataclasses import replace

    from unclip_lib.distributed import pick_device

    cfg = TrainConfig(steps=30, batch_size=16, lr=1e-2, warmup=2, checkpoint_every=30, log_every=1,
                      precision="bf16", device="cpu")
    model, _ = fit(_toy(), _batch, _loss, cfg, tmp_path / "bf16", "toy", {"w": 1}, desc="bf16")
    fit(_toy(), _batch, _loss, replace(cfg, precision="fp32"), tmp_path / "fp32", "toy", {"w": 1}, desc="fp32")
    low, full = ([json.loads(line)["loss"] for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
                 for d in ("bf16", "fp32"))
    assert low != full                                              # autocast did run in bfloat16 ...
    assert max(abs(a - b) / b for a, b in zip(low, full)) < 0.05     # ... and follows the fp32 run
    assert sum(low[-5:]) < sum(low[:5])
    assert model[0].weight.dtype == torch.float32                  # the weights stay float32
    with pytest.raises(ValueError, match="precision"):
        fit(_toy(), _batch, _loss, TrainConfig(steps=1, precision="fp8"), tmp_path / "x", "toy", {"w": 1})
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            pick_device("cuda")
