"""Your own data: captioned images from a folder, an index or tar shards (bad files skipped
and counted), the resumable embedding cache, training a prior and a decoder from it, and a
2-process (gloo) training run that follows the single-process loss trajectory."""
import json
import subprocess
import sys
import warnings

import pytest
import torch
from PIL import Image

from unclip_lib import ShapesWorld
from unclip_lib.data import CaptionedImages, expand_shards, write_shards
from unclip_lib.distributed import rank_slice
from unclip_lib.embedding_cache import EmbeddingCache, build_embedding_cache


def _examples(n, seed=0, resolution=64):
    batch = ShapesWorld(seed=seed).sample(n, resolution=resolution)
    return [(f"img{i:03d}", batch.images[i], c) for i, c in enumerate(batch.captions)]


def _save(image: torch.Tensor, path):
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """10 good images with captions, one unreadable file, one image without caption, one
    with an empty caption, and one wide image (cropped to its centre)."""
    root = tmp_path_factory.mktemp("photos")
    for key, image, caption in _examples(10):
        _save(image, root / f"{key}.png")
        (root / f"{key}.txt").write_text(caption + "\n")
    (root / "broken.png").write_bytes(b"not an image at all")
    (root / "broken.txt").write_text("a broken file")
    _save(torch.rand(3, 20, 20), root / "nocaption.png")
    _save(torch.rand(3, 20, 20), root / "empty.png")
    (root / "empty.txt").write_text("  \n")
    wide = torch.zeros(3, 40, 80)
    wide[0, :, 20:60] = 1.0                                    # a red square in the middle of a black band
    _save(wide, root / "wide.jpg")
    (root / "wide.txt").write_text("a red square on black")
    return root


def _read(data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = list(data)
    return items, caught


def test_a_folder_streams_good_pairs_and_counts_the_bad(folder):
    data = CaptionedImages(folder, resolution=32)
    items, caught = _read(data)
    assert len(items) == 11
    assert dict(data.skipped) == {"unreadable image": 1, "missing or empty caption": 2}
    assert len(caught) == 2                                 # one warning per kind of problem
    key, image, caption = next(i for i in items if i[0] == "wide.jpg")
    assert image.shape == (3, 32, 32) and caption == "a red square on black"
    assert image[0].mean() > 0.95 and image[1:].mean() < 0.05   # the centre crop is all red


def test_jsonl_and_csv_indexes(folder, tmp_path):
    rows = [{"path": str(folder / f"img{i:03d}.png"), "caption": f"caption {i}"} for i in range(5)]
    rows.append({"path": str(folder / "missing.png"), "caption": "gone"})
    (tmp_path / "index.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    data = CaptionedImages(tmp_path / "index.jsonl", resolution=16)
    items, _ = _read(data)
    assert [c for _, _, c in items] == [f"caption {i}" for i in range(5)]
    assert dict(data.skipped) == {"unreadable image": 1, "unreadable index line": 1}
    (tmp_path / "index.csv").write_text("path,caption\n" + "".join(f"{r['path']},\"{r['caption']}, ok\"\n"
                                                                    for r in rows[:3]))
    items, _ = _read(CaptionedImages(str(tmp_path / "index.csv"), resolution=16))
    assert [c for _, _, c in items] == [f"caption {i}, ok" for i in range(3)]


def test_tar_shards_stream_split_over_ranks_and_survive_a_corrupt_shard(tmp_path):
    paths = write_shards(_examples(15), tmp_path, per_shard=5)
    assert [p.name for p in paths] == [f"shard-{i:05d}.tar" for i in range(3)]
    assert expand_shards(str(tmp_path / "shard-{00000..00002}.tar")) == [str(p) for p in paths]
    corrupt = tmp_path / "shard-00003.tar"
    corrupt.write_bytes(paths[0].read_bytes()[:612])            # cut off inside its first image
    shards = [str(p) for p in paths] + [str(corrupt)]
    data = CaptionedImages(shards, resolution=32)
    items, _ = _read(data)
    keys = [k.split(":")[-1] for k, _, _ in items]
    assert keys[:15] == [f"img{i:03d}" for i in range(15)]
    assert data.skipped["corrupt or unreadable shard"] == 1
    whole = set(keys[:15])
    parts = [{k.split(":")[-1] for k, _, _ in CaptionedImages(shards[:3], 32, rank=r, world_size=2)} for r in (0, 1)]
    assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == whole
    one = CaptionedImages(shards[:3], 32, rank=1, world_size=5)   # fewer shards than readers: every k-th
    assert [k.split(":")[-1] for k, _, _ in one] == [f"img{i:03d}" for i in range(1, 15, 5)]
    with pytest.raises(ValueError, match="folder of images"):
        CaptionedImages(str(tmp_path / "notes.md"))


class _Dies:
    """A dataset that is interrupted after `n` examples, as a killed process would be."""

    def __init__(self, data, n):
        self.data, self.n = data, n

    def __iter__(self):
        for i, item in enumerate(self.data):
            if i == self.n:
                raise KeyboardInterrupt
            yield item


def test_the_embedding_cache_resumes_and_matches_an_uninterrupted_build(clip, tmp_path):
    examples = _examples(21, seed=3)
    whole = build_embedding_cache(examples, clip, tmp_path / "whole", shard_size=8, batch_size=3, images=32,
                                  progress=False)
    assert whole["count"] == 21 and [s["count"] for s in whole["shards"]] == [8, 8, 5]
    with pytest.raises(KeyboardInterrupt):
        build_embedding_cache(_Dies(examples, 13), clip, tmp_path / "part", shard_size=8, batch_size=3, images=32,
                              progress=False)
    kept = json.loads((tmp_path / "part" / "manifest.json").read_text())
    assert kept["count"] == 8 and not kept["complete"]            # the finished shard survived
    build_embedding_cache(examples, clip, tmp_path / "part", shard_size=8, batch_size=3, images=32, progress=False)
    a, b = EmbeddingCache(tmp_path / "whole"), EmbeddingCache(tmp_path / "part")
    assert len(a) == len(b) == 21 and a.names == b.names == ("images", "mask", "text", "z_i", "z_t")
    for k in a.names:
        assert torch.equal(a.column(k), b.column(k)), k
    z = clip.encode_image(torch.stack([x for _, x, _ in examples]))
    assert torch.allclose(a.column("z_i"), z, atol=1e-5)
    rows = torch.tensor([20, 0, 9, 9, 15])                         # across shard boundaries, repeated
    for k in a.names:
        assert torch.equal(a.gather(k, rows), a.column(k)[rows]), k
    assert torch.equal(a.column("text", limit=10), a.column("text")[:10])
    with pytest.raises(IndexError, match=r"\[0, 21\)"):
        a.gather("z_i", [21])
    z_i, text, mask, z_t = a.prior_batch(0, 6, seed=1)
    assert z_i.shape == (6, 128) and text.shape[0] == 6 and mask.dtype == torch.bool
    assert torch.equal(a.prior_batch(5, 6, seed=1)[0], b.prior_batch(5, 6, seed=1)[0])
    images, *_ = a.decoder_batch(0, 4)
    assert images.shape == (4, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    with pytest.raises(Exception, match="another folder"):
        build_embedding_cache(examples, clip, tmp_path / "whole", images=64, progress=False)
    # resuming with other data is refused, not silently misaligned
    with pytest.raises(KeyboardInterrupt):
        build_embedding_cache(_Dies(examples, 13), clip, tmp_path / "other", shard_size=8, images=32, progress=False)
    with pytest.raises(Exception, match="other data"):
        build_embedding_cache(examples[1:], clip, tmp_path / "other", shard_size=8, images=32, progress=False)


@pytest.mark.filterwarnings("ignore:skipping")     # the folder's two bad files, each warned of (checked once)
def test_a_resumed_folder_cache_does_not_decode_finished_examples_again(clip, folder, tmp_path, monkeypatch):
    import unclip_lib.data as data_module

    with pytest.warns(UserWarning) as caught:
        whole = build_embedding_cache(CaptionedImages(folder, resolution=64), clip, tmp_path / "whole", shard_size=4,
                                      progress=False)
    said = " | ".join(str(w.message) for w in caught)
    assert "skipping broken.png (UnidentifiedImageError)" in said
    assert "skipping empty.png: missing or empty caption" in said
    with pytest.raises(KeyboardInterrupt):
        build_embedding_cache(_Dies(list(CaptionedImages(folder, resolution=64)), 9), clip, tmp_path / "part",
                              shard_size=4, progress=False)
    decoded = []
    square = data_module.square_image
    monkeypatch.setattr(data_module, "square_image", lambda src, r: decoded.append(src) or square(src, r))
    resumed = build_embedding_cache(CaptionedImages(folder, resolution=64), clip, tmp_path / "part", shard_size=4,
                                    progress=False)
    assert resumed["count"] == whole["count"] == 11
    assert len(decoded) == 11 - 8 + 1                 # the 3 new examples and the unreadable file, no more
    assert torch.equal(EmbeddingCache(tmp_path / "part").column("z_i"), EmbeddingCache(tmp_path / "whole").column("z_i"))


def test_a_prior_and_a_decoder_train_from_the_cache(clip, tmp_path):
    from unclip_lib.decoder import load_decoder
    from unclip_lib.pipeline import UnCLIP
    from unclip_lib.prior import load_prior
    from unclip_lib.train import TrainConfig, train_decoder, train_prior

    build_embedding_cache(_examples(64, seed=5), clip, tmp_path / "cache", images=32, progress=False)
    cfg = TrainConfig(steps=30, batch_size=16, lr=1e-3, warmup=5, checkpoint_every=30, log_every=1, ema=0.9,
                      weight_decay=0.0)
    train_prior("diffusion", tmp_path / "prior", "shapes", cfg, export=tmp_path / "prior.safetensors",
                validate=16, cache=tmp_path / "cache")
    losses = [json.loads(line)["loss"] for line in (tmp_path / "prior" / "log.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    cfg = TrainConfig(steps=4, batch_size=8, checkpoint_every=4, ema=0.9, weight_decay=0.0)
    train_decoder(tmp_path / "decoder", "base32", cfg, export=tmp_path / "decoder.safetensors",
                  cache=tmp_path / "cache")
    pipe = UnCLIP(clip, load_decoder(str(tmp_path / "decoder.safetensors")), [],
                  priors={"diffusion": load_prior(str(tmp_path / "prior.safetensors"))})
    out = pipe.generate(["a red circle"], seed=0, decoder_steps=3, prior_steps=4)
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def test_rank_slices_cover_the_batch():
    batch = (torch.arange(8), [f"c{i}" for i in range(8)], {"m": torch.ones(8, 2)})
    parts = [rank_slice(batch, r, 2) for r in (0, 1)]
    assert torch.equal(torch.cat([p[0] for p in parts]), batch[0]) and parts[1][1] == ["c4", "c5", "c6", "c7"]
    assert parts[0][2]["m"].shape == (4, 2)
    with pytest.raises(ValueError, match="divisible"):
        rank_slice(torch.arange(7), 0, 2)


def _train(run_dir, processes: int, *command, steps: int = 8):
    """Run `unclip-lab train <command>` in 1 process or under torchrun; the logged losses."""
    args = ["-m", "unclip_lib.cli", "train", *command, "--steps", str(steps), "--batch-size", "16", "--log-every",
            "1", "--checkpoint-every", "4", "--threads", "1", "--device", "cpu", "--run-dir", str(run_dir)]
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone",
                                          f"--nproc_per_node={processes}"]
    out = subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in log if "loss" in r]


def _relative_gap(one, two):
    return max(abs(a - b) / abs(a) for a, b in zip(one, two))


def test_rank_generators_draw_the_single_process_rows():
    from unclip_lib.distributed import RankGenerator, batch_rand, batch_randint, batch_randn

    whole = torch.Generator().manual_seed(5)
    t, x, u = torch.randint(0, 1000, (8,), generator=whole), torch.randn((8, 3), generator=whole), \
        torch.rand((8,), generator=whole)
    for r in (0, 1):
        g = RankGenerator(torch.Generator().manual_seed(5), r, 2)
        rows = slice(4 * r, 4 * r + 4)
        assert torch.equal(batch_randint(1000, (4,), g), t[rows])
        assert torch.equal(batch_randn((4, 3), g), x[rows])
        assert torch.equal(batch_rand((4,), g), u[rows])


def test_two_gloo_processes_train_a_diffusion_prior_like_one_and_resume(clip, tmp_path):
    """A diffusion loss is random (timesteps, noise, caption dropout): each rank draws the one
    process's noise for its own rows, and DDP averages the gradients of the ranks' slices, so 2
    processes take the steps of 1, to float rounding, also after resuming from rank 0's checkpoint."""
    build_embedding_cache(_examples(48, seed=9), clip, tmp_path / "cache", progress=False)
    command = ["prior", "--kind", "diffusion", "--cache", str(tmp_path / "cache"), "--validate", "8"]
    one, two = _train(tmp_path / "one", 1, *command), _train(tmp_path / "two", 2, *command)
    assert len(one) == len(two) == 8
    assert _relative_gap(one, two) < 1e-4, (one, two)
    assert one[-1] < one[0]
    assert json.loads((tmp_path / "two" / "train_config.json").read_text())["processes"] == 2
    one = _train(tmp_path / "one", 1, *command, steps=12)       # resumes at step 8
    two = _train(tmp_path / "two", 2, *command, steps=12)
    assert len(one) == len(two) == 12
    assert _relative_gap(one, two) < 1e-4, (one, two)


def test_an_open_clip_architecture_feeds_the_cache_and_a_prior(tmp_path, monkeypatch):
    """The cache takes any CLIP that load_clip gives: here a small open_clip architecture,
    saved as safetensors and loaded like a real pretrained model, through the CLI."""
    import open_clip
    from safetensors.torch import save_file

    from unclip_lib import load_clip
    from unclip_lib.cli import main
    from unclip_lib.train import TrainConfig, train_prior

    config = {"embed_dim": 32,
              "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
              "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 48, "heads": 2, "layers": 1}}
    (tmp_path / "unclip-test-cache.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "unclip-test-cache.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.create_model("unclip-test-cache").state_dict().items()},
              str(weights))
    folder = tmp_path / "photos"
    folder.mkdir()
    for key, image, caption in _examples(12, seed=8):
        _save(image, folder / f"{key}.png")
        (folder / f"{key}.txt").write_text(caption)

    assert main(["cache", str(folder), str(tmp_path / "cache"), "--clip", "unclip-test-cache", "--pretrained",
                 str(weights), "--images", "32", "--shard-size", "5"]) == 0
    cache = EmbeddingCache(tmp_path / "cache")
    assert len(cache) == 12 and len(cache.manifest["shards"]) == 3
    assert cache.dim == 32 and cache.text_shape == (24, 48)          # the real model's widths
    clip = load_clip("unclip-test-cache", pretrained=str(weights))
    assert cache.clip_name == clip.name
    prior = train_prior("diffusion", tmp_path / "prior", cfg=TrainConfig(steps=3, batch_size=4, checkpoint_every=3),
                        validate=4, cache=tmp_path / "cache")
    z_i, text, mask, z_t = cache.prior_batch(0, 4)
    sampled = prior.sample(text, mask, z_t, steps=4, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (4, 32) and torch.allclose(sampled.norm(dim=-1), torch.ones(4), atol=1e-4)


def test_bad_index_files_are_skipped_or_named(folder, tmp_path):
    lines = ['{"path": "img000.png", "caption": "a red circle"}', "[1, 2]", '"just a string"', "{not json",
             '{"path": "img001.png", "text": "a blue star"}']
    (folder / "odd.jsonl").write_text("\n".join(lines) + "\n")
    data = CaptionedImages(folder / "odd.jsonl", resolution=32)
    items, _ = _read(data)
    assert [k for k, _, _ in items] == ["img000.png", "img001.png"]
    assert data.skipped["unreadable index line"] == 3 and data.record_count() == 5
    (tmp_path / "nohead.csv").write_text("img000.png,a red circle\nimg001.png,a blue star\n")
    with pytest.raises(ValueError, match="header row naming an image column"):
        list(CaptionedImages(tmp_path / "nohead.csv", resolution=32))


def test_the_cache_command_refuses_torchrun_and_counts_its_records(folder, tmp_path, monkeypatch, capsys):
    from unclip_lib.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["cache", str(folder), str(tmp_path / "c")]) == 2
    assert "without torchrun" in capsys.readouterr().err
    assert CaptionedImages(folder).record_count() == 14        # every image file, good or bad
