import pytest
import torch

from unclip_lib import ShapesWorld
from unclip_lib.evaluate import attribute_accuracy, scene_accuracy

# The resolutions the pipeline produces: base 32, upsampled 64 and 128.
@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_evaluator_reads_one_object_scenes(evaluator, resolution):
    batch = ShapesWorld(seed=321).sample(600, objects=1, resolution=resolution, split="all", word_prob=0.3)
    acc = attribute_accuracy(evaluator.predict(batch.images), batch.attributes)
    for key in ("shape", "color", "size", "position"):
        assert acc[key] >= 0.99, (key, acc)


@pytest.mark.parametrize("resolution", [32, 128])
def test_evaluator_reads_two_object_scenes(evaluator, resolution):
    batch = ShapesWorld(seed=322).sample(300, objects=2, resolution=resolution, split="all")
    preds = evaluator.predict(batch.images)
    assert sum("objects" in p for p in preds) >= 0.98 * len(preds)
    acc = scene_accuracy(preds, batch.attributes)
    for key in ("shape", "color", "size", "position"):
        assert acc[key] >= 0.98, (key, acc)


def test_evaluator_reads_words_at_64px(evaluator):
    world = ShapesWorld(seed=323)
    batch = world.sample(300, objects=1, resolution=64, split="all", word_prob=0.5)
    acc = scene_accuracy(evaluator.predict(batch.images), batch.attributes)
    assert acc["word"] >= 0.95 and acc["background"] >= 0.98


def test_evaluator_answers_in_the_world_form(evaluator):
    one = evaluator.predict(ShapesWorld(0).sample(2).images)
    assert set(one[0]) == {"shape", "color", "size", "position", "background", "word"}
    forced = evaluator.predict(ShapesWorld(0).sample(2, objects=2).images, objects=2)
    assert len(forced[0]["objects"]) == 2
    with pytest.raises(ValueError):
        evaluator.predict(torch.rand(1, 3, 32, 32), objects=3)
