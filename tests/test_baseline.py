import os
import pickle

import pytest
import torch

from prune_ray.baseline import BaselineConfig, BaselineStore, CorruptCheckpointError, load_checkpoint_file
from prune_ray.data import DataOptions
from prune_ray.models import create_model
from prune_ray.spec import SweepSpec
from prune_ray.results.storage import open_storage
from prune_ray.train import TrainRecipe, train

CONFIG = BaselineConfig("digits_cnn", "digits", DataOptions(), TrainRecipe(epochs=1), seed=0)


class CountingTrain:
    """The real training function, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return train(*args, **kwargs)


def test_key_depends_on_what_determines_the_weights():
    assert CONFIG.key == BaselineConfig("digits_cnn", "digits", DataOptions(), TrainRecipe(epochs=1), 0).key
    assert CONFIG.key != BaselineConfig("digits_cnn", "digits", DataOptions(), TrainRecipe(epochs=2), 0).key
    assert CONFIG.key != BaselineConfig("digits_cnn", "digits", DataOptions(), TrainRecipe(epochs=1), 1).key
    # where the data files live does not change the baseline
    assert CONFIG.key == BaselineConfig("digits_cnn", "digits", DataOptions(root="/x"), TrainRecipe(epochs=1), 0).key


def test_second_request_loads_and_trains_nothing(tmp_path, digits):
    store = BaselineStore(open_storage(str(tmp_path)))
    counter = CountingTrain()
    first = store.get_or_train(CONFIG, digits, train_fn=counter)
    assert first.trained_now and counter.calls == 1
    second = store.get_or_train(CONFIG, digits, train_fn=counter)
    assert not second.trained_now and counter.calls == 1
    assert second.top1 == first.top1
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    stored = sorted(os.listdir(tmp_path / "baselines" / CONFIG.key))
    assert stored == [".lock", "meta.json", "model.safetensors"]


def test_default_baseline_recipe_reaches_90_percent_on_digits(tmp_path, digits):
    config = BaselineConfig("digits_cnn", "digits", DataOptions(), SweepSpec().baseline.train, seed=0)
    baseline = BaselineStore(open_storage(str(tmp_path))).get_or_train(config, digits)
    assert baseline.top1 >= 0.9


def test_corrupt_stored_checkpoint_names_the_file(tmp_path, digits):
    store = BaselineStore(open_storage(str(tmp_path)))
    store.get_or_train(CONFIG, digits)
    weights = tmp_path / "baselines" / CONFIG.key / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as after a full disk
    with pytest.raises(CorruptCheckpointError, match=str(weights)):
        store.get_or_train(CONFIG, digits)
    counter = CountingTrain()
    rebuilt = store.get_or_train(CONFIG, digits, retrain_corrupt=True, train_fn=counter)
    assert rebuilt.trained_now and counter.calls == 1
    assert not store.get_or_train(CONFIG, digits).trained_now  # the rebuilt file loads again


def test_user_checkpoints_load_without_unpickling_code(tmp_path):
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8)
    good = tmp_path / "good.pt"
    torch.save({"state_dict": model.state_dict()}, good)
    loaded = load_checkpoint_file(create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8), str(good))
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CorruptCheckpointError, match="evil.pt pickles code, not only tensors"):
        load_checkpoint_file(model, str(evil))

    wrong = tmp_path / "wrong.pt"
    torch.save(create_model("digits_cnn", num_classes=3, in_channels=1, image_size=8).state_dict(), wrong)
    with pytest.raises(CorruptCheckpointError, match="wrong.pt does not fit the model"):
        load_checkpoint_file(model, str(wrong))
    with pytest.raises(CorruptCheckpointError, match="missing.pt does not exist"):
        load_checkpoint_file(model, str(tmp_path / "missing.pt"))
