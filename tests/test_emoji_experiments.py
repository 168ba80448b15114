"""The typographic attack on emoji (unclip_lib.emoji_experiments): the images it writes, the
word's concept, and the shipped emoji CLIP's zero-shot figures on them."""
import numpy as np
import pytest

from unclip_lib.emoji import EmojiWorld, draw_word
from unclip_lib.emoji_experiments import (apples, attack_words, typographic_attack_images,
                                          typographic_attack_scores, word_concept)


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
