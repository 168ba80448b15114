"""Minimal pairs of the emoji world (unclip_lib.emoji_pairs): each pair differs in exactly
the one thing its kind names, stays inside its split, and is reproducible from its seed."""
import pytest

from unclip_lib.emoji import EmojiWorld
from unclip_lib.emoji_pairs import KINDS, concept_swaps, minimal_pairs


@pytest.fixture(scope="module")
def world():
    return EmojiWorld()


def test_the_papers_examples_are_there(world):
    colour = {(world.concepts[a]["name"], world.concepts[b]["name"])
              for swaps in concept_swaps(world, "colour").values() for a, b in swaps}
    assert {("red apple", "green apple"), ("green apple", "red apple"), ("red heart", "blue heart"),
            ("green book", "blue book")} <= colour
    person = {(world.concepts[a]["name"], world.concepts[b]["name"])
              for swaps in concept_swaps(world, "person").values() for a, b in swaps}
    assert {("man", "woman"), ("boy", "girl"), ("man cook", "woman cook")} <= person
    opposite = {(world.concepts[a]["name"], world.concepts[b]["name"])
                for swaps in concept_swaps(world, "opposite").values() for a, b in swaps}
    assert {("thumbs up", "thumbs down"), ("full moon", "new moon"), ("grinning face", "crying face")} <= opposite
    # the hearts are one family, so sampling by family does not drown the apples in hearts
    assert len(concept_swaps(world, "colour")["_ heart"]) >= 90


@pytest.mark.parametrize("kind", KINDS)
def test_pairs_differ_in_one_thing_inside_the_split(world, kind):
    pairs = minimal_pairs(world, kind, n=40, seed=5)
    assert len(pairs) == 40
    held_out = set(world.pairs("held_out"))
    for p in pairs:
        differing = {k for k in ("concept", "style", "skin_tone") if p.source[k] != p.target[k]}
        assert differing == {p.changed}, p
        assert p.source["style"] == p.target["style"] or kind == "style"
        assert (p.source["concept"], p.source["style"]) not in held_out
        assert (p.target["concept"], p.target["style"]) not in held_out
        assert p.from_caption == world.caption({k: p.source[k] for k in ("concept", "skin_tone")}
                                               | ({"style": p.source["style"]} if kind == "style" else {}))
        if kind in ("colour", "person", "opposite"):
            a, b = p.from_caption.split(" "), p.to_caption.split(" ")
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1, (p.from_caption, p.to_caption)
    assert minimal_pairs(world, kind, n=40, seed=5) == pairs
    assert minimal_pairs(world, kind, n=40, seed=6) != pairs


def test_bad_requests_say_what_is_wrong(world):
    with pytest.raises(ValueError, match="did you mean: 'colour'"):
        minimal_pairs(world, "color")
    with pytest.raises(ValueError, match="n"):
        minimal_pairs(world, "style", n=0)
    with pytest.raises(ValueError, match="split"):
        minimal_pairs(world, "style", split="test")
