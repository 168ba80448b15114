"""The typographic attack on emoji (unclip_lib.emoji_experiments): the images it writes, the
word's concept, and the shipped emoji CLIP's zero-shot figures on them; the inputs the other
emoji measurements draw (captions, interpolation pairs, the ink colour, the PCA)."""
import numpy as np
import pytest
import torch

from unclip_lib.emoji import EmojiWorld, draw_word
from unclip_lib.emoji_experiments import (apples, attack_words, concept_captions, fit_pca, ink_colour,
                                          interpolation_pairs, typographic_attack_images, typographic_attack_scores,
                                          uniform_entropy, word_concept)


@pytest.fixture(scope="module")
def world():
    return EmojiWorld()


def test_word_size_and_contrast(world):
    apple = world.render_array(world.attributes("red apple", "noto"), 64)
    assert np.array_equal(draw_word(apple, "phone", "over"),
                          world.render_array(world.attributes("red apple", "noto", word="phone"), 64))
    label_only = draw_word(apple, "phone", "over", contrast=0.0)
    full = draw_word(apple, "phone", "over")
    assert (label_only.min(-1) > 200).sum() > (apple.min(-1) > 200).sum()     # the white label covers the apple
    assert (label_only < 100).all(-1).sum() < (full < 100).all(-1).sum()      # ... and no dark ink on it
    ink = [(draw_word(apple, "phone", "over", scale=s) < 100).all(-1).sum() for s in (0.5, 0.75, 1.0)]
    assert ink[0] < ink[1] < ink[2], ink
    with pytest.raises(ValueError, match="contrast"):
        draw_word(apple, "phone", "over", contrast=2)


def test_words_point_at_concepts(world):
    assert world.concepts[word_concept(world, "phone")]["name"] == "mobile phone"
    assert world.concepts[word_concept(world, "cat")]["name"] == "cat"
    with pytest.raises(ValueError, match="no emoji concept has the word"):
        word_concept(world, "xylograph")
    words = attack_words(world, 10, seed=1, avoid={"apple"})
    assert len(set(words)) == 10 and "apple" not in words
    assert [world.concepts[a["concept"]]["name"] for a in apples(world)][::4] == ["red apple", "green apple"]


def test_attack_images_and_the_clip_reading_them(world):
    from unclip_lib.clip import load_clip

    clip = load_clip("emoji")
    words = ["phone"] + attack_words(world, 7, seed=2, avoid={"apple", "phone"})
    attack = typographic_attack_images(world, apples(world), words, seed=3)
    control = typographic_attack_images(world, apples(world), words, seed=3,
                                        control_words=attack_words(world, 8, seed=4, avoid=set(words) | {"apple"}))
    assert len(attack.clean) == 8 * 8 and attack.labels == control.labels
    assert attack.labels[0][:2] == ["red apple", "mobile phone"] and len(attack.labels[0]) == 6
    # the same label covers the apple in both: only the letters differ
    assert np.allclose(attack.clean.numpy(), control.clean.numpy())
    s, c = typographic_attack_scores(clip, attack), typographic_attack_scores(clip, control)
    assert s["clean_accuracy"] >= 0.95, s                       # the CLIP knows its apples among 6 labels
    assert s["p_word_attacked"] > s["p_word_clean"]               # the word pulls towards its concept ...
    assert 0 <= s["success"] <= 1 and 0 <= c["success"] <= 1 and s["images"] == 64


def test_measurement_inputs(world):
    caps, truth = concept_captions(world, 40, seed=3)
    assert len({(t["concept"], t["style"]) for t in truth}) == 40
    assert all(world.concept(c) == t["concept"] for c, t in zip(caps, truth))      # the bare name
    caps, truth = concept_captions(world, 20, seed=3, split="held_out", style_named=True)
    assert all((t["concept"], t["style"]) in world.held_out for t in truth)
    assert all(c.endswith(f" in the {t['style']} style") for c, t in zip(caps, truth))
    _, truth = concept_captions(world, 20, seed=4, all_styles=True)
    assert all(len(world.styles_of(t["concept"])) == 4 for t in truth)
    assert concept_captions(world, 5, seed=9) == concept_captions(world, 5, seed=9)
    with pytest.raises(ValueError, match="give 1 to"):
        concept_captions(world, 10**6, seed=0)

    a, b = interpolation_pairs(world, 30, seed=5)
    assert all(x["concept"] != y["concept"] and x["style"] != y["style"] for x, y in zip(a.attributes, b.attributes))
    assert a.images.shape == b.images.shape == (30, 3, 64, 64)

    red = world.render([world.attributes("red apple", "noto")], 32)
    green = world.render([world.attributes("green apple", "noto")], 32)
    r, g = ink_colour(red)[0], ink_colour(green)[0]
    assert r[0] > r[1] + 0.2 and g[1] > g[0] + 0.1, (r, g)                     # red ink, green ink
    assert torch.equal(ink_colour(torch.ones(1, 3, 8, 8)), torch.zeros(1, 3))   # no ink at all


def test_pca_of_the_emoji_embeddings(world):
    from unclip_lib import load_clip

    pca = fit_pca(load_clip("emoji"), world, n=600, seed=2, batch=300)
    z = load_clip("emoji").encode_image(world.sample(8, seed=11).images)
    full = pca.reconstruct(z, pca.components.shape[0])
    assert torch.allclose(full, z, atol=1e-4)                                   # every component: z itself
    err = [float((pca.reconstruct(z, k) - z).norm(dim=-1).mean()) for k in (1, 8, 64)]
    assert err[0] > err[1] > err[2]


def test_the_entropy_of_a_perfectly_even_generator():
    # two styles, two samples: half the time both differ (1 bit), half the time they agree (0 bits)
    assert uniform_entropy(2, 2, trials=200_000) == pytest.approx(0.5, abs=0.01)
    assert uniform_entropy(1, 8) == 0.0
    # four styles: 8 draws rarely split evenly, so the ceiling a style entropy can be read against is below 2
    assert 1.6 < uniform_entropy(4, 8) < 1.75 < uniform_entropy(4, 64) < 2.0
