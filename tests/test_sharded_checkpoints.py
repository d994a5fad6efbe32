"""Sharded .safetensors checkpoints (Hugging Face's *.safetensors.index.json).

- A checkpoint split into shards converts exactly like the single file, through
  convert(), the generated CLI, `torch2keras verify` and `inspect`.
- An index that points outside its folder, at a missing file, or disagrees
  with its shards is refused, naming the index and the entry, before any
  weight changes.
- Memory-mapped tensors are handed back after assignment (the peak RSS fix
  that bench/memory.py measures) and still read correctly afterwards.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from compiler import cli, inspect_checkpoint, parity
from tests.conftest import GENERATED, SPECS


@pytest.fixture(scope="module")
def seed_linear():
    return parity.import_generated(GENERATED / "seed_linear.py")


def _linear_state_dict():
    generator = torch.Generator().manual_seed(0)
    return {
        "fc.weight": torch.randn(5, 10, generator=generator),
        "fc.bias": torch.randn(5, generator=generator),
    }


def _sharded(folder, shards: dict, weight_map=None, index_name="model"):
    """Write each {file name: {key: tensor}} shard and an index; the index path.

    The weight_map defaults to the truth: each key under the shard holding it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for name, tensors in shards.items():
        save_file(tensors, str(folder / name))
        truth.update(dict.fromkeys(tensors, name))
    index = folder / f"{index_name}.safetensors.index.json"
    weight_map = truth if weight_map is None else weight_map
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def _two_shards(folder, weight_map=None):
    sd = _linear_state_dict()
    shards = {
        "a.safetensors": {"fc.weight": sd["fc.weight"]},
        "b.safetensors": {"fc.bias": sd["fc.bias"]},
    }
    return _sharded(folder, shards, weight_map)


def _refusal(module, index) -> str:
    with pytest.raises(module.WeightLoadError) as caught:
        module.read_checkpoint(index)
    message = str(caught.value)
    assert message.startswith(f"{index}: bad checkpoint index: "), message
    return message.removeprefix(f"{index}: bad checkpoint index: ")


# --- parity --------------------------------------------------------------------


def test_resnet18_in_three_shards_matches_pytorch(tmp_path):
    factory = yaml.safe_load((SPECS / "resnet18.yaml").read_text())["source"]["model"]
    torch_model = parity.randomize_(parity.build(factory), seed=0)
    index = parity.save_sharded_checkpoint(torch_model, tmp_path / "ckpt", shards=3)
    weight_map = json.loads(index.read_text())["weight_map"]
    assert len(set(weight_map.values())) == 3  # really split
    assert weight_map.keys() == torch_model.state_dict().keys()

    module = parity.import_generated(GENERATED / "resnet18.py")
    keras_model = module.convert(index)

    x = parity.random_input((2, 3, 224, 224), seed=1)
    expected = parity.torch_output(torch_model, x)
    error = parity.max_abs_error(expected, parity.keras_output(keras_model, x))
    scale = max(1.0, float(np.abs(expected).max()))
    print(f"resnet18, 3 shards: max abs error {error:.3g}, scale {scale:.3g}")
    assert np.abs(expected).max() > 0.1
    assert error <= 1e-4 * scale


def test_shards_read_as_the_single_file_does(seed_linear, tmp_path):
    torch_model = parity.randomize_(parity.build("examples.seed:SeedCNN"), seed=4)
    module = parity.import_generated(GENERATED / "seed_cnn.py")
    single = module.read_checkpoint(
        parity.save_checkpoint(torch_model, tmp_path / "one.safetensors")
    )
    index = parity.save_sharded_checkpoint(torch_model, tmp_path / "s", shards=2)
    sharded = module.read_checkpoint(index)
    assert sorted(sharded) == sorted(single)
    for key, value in single.items():
        assert sharded[key].dtype == value.dtype, key
        assert np.array_equal(sharded[key], value), key


def test_generated_cli_converts_an_index(seed_linear, tmp_path, capsys):
    index = _two_shards(tmp_path / "ckpt")
    output = tmp_path / "linear.keras"
    assert seed_linear.main([str(index), "-o", str(output)]) == 0
    assert f"read 2 tensors from {index}" in capsys.readouterr().out
    import keras

    loaded = keras.saving.load_model(output)
    kernel = loaded.get_layer("fc").kernel.numpy()
    assert np.array_equal(kernel, _linear_state_dict()["fc.weight"].numpy().T)


def test_verify_accepts_an_index(tmp_path, capsys):
    torch_model = parity.randomize_(parity.build("examples.seed:SeedLinear"), seed=2)
    index = parity.save_sharded_checkpoint(torch_model, tmp_path / "ckpt", shards=2)
    spec = SPECS / "seed_linear.yaml"
    assert cli.main(["verify", str(spec), "--checkpoint", str(index)]) == 0
    assert "fc" in capsys.readouterr().out


def test_inspect_lists_every_shard(tmp_path, capsys):
    index = _two_shards(tmp_path / "ckpt")
    listing = inspect_checkpoint.inspect(index)
    assert [(t.key, t.shape, t.bytes) for t in listing.tensors] == [
        ("fc.bias", (5,), 20),
        ("fc.weight", (5, 10), 200),
    ]
    assert cli.main(["inspect", str(index)]) == 0
    assert f"{index}: 2 tensors, 55 parameters" in capsys.readouterr().out


def test_inspect_refuses_an_index_that_disagrees(tmp_path, capsys):
    index = _two_shards(
        tmp_path / "ckpt", {"fc.weight": "b.safetensors", "fc.bias": "b.safetensors"}
    )
    assert cli.main(["inspect", str(index)]) == inspect_checkpoint.EXIT_FINDINGS
    assert (
        "the weight_map puts 'fc.weight' in 'b.safetensors', which lacks it"
        in capsys.readouterr().err
    )


# --- refusals --------------------------------------------------------------------


def test_absolute_shard_path_is_refused(seed_linear, tmp_path):
    index = _two_shards(tmp_path / "ckpt")
    outside = tmp_path / "outside.safetensors"
    save_file({"fc.weight": torch.zeros(5, 10)}, str(outside))
    index.write_text(
        json.dumps(
            {"weight_map": {"fc.weight": str(outside), "fc.bias": "b.safetensors"}}
        )
    )
    assert _refusal(seed_linear, index) == (
        f"weight_map entry 'fc.weight': {str(outside)!r} is an absolute path; "
        "shards lie beside it"
    )


@pytest.mark.parametrize("name", ["../outside.safetensors", "sub/../../x.safetensors"])
def test_shard_path_climbing_out_is_refused(seed_linear, tmp_path, name):
    save_file({"fc.weight": torch.zeros(5, 10)}, str(tmp_path / "outside.safetensors"))
    index = _two_shards(
        tmp_path / "ckpt", {"fc.weight": name, "fc.bias": "b.safetensors"}
    )
    assert _refusal(seed_linear, index) == (
        f"weight_map entry 'fc.weight': {name!r} leads out of the index's folder"
    )


def test_hugging_face_cache_layout_loads(seed_linear, tmp_path):
    """A Hugging Face cache: snapshots/<rev>/ holds links (the index's too) into
    ../../blobs/, where the files have hash names. Shard names are read
    relative to the index as given, and the links are followed."""
    index = _two_shards(tmp_path / "ckpt")
    blobs, snapshot = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for number, file in enumerate(sorted((tmp_path / "ckpt").iterdir())):
        file.rename(blobs / f"blob{number}")
        os.symlink(
            os.path.relpath(blobs / f"blob{number}", snapshot), snapshot / file.name
        )
    linked = snapshot / index.name
    assert linked.is_symlink()
    assert sorted(seed_linear.read_checkpoint(linked)) == ["fc.bias", "fc.weight"]


def test_symlink_inside_the_folder_is_followed(seed_linear, tmp_path):
    index = _two_shards(tmp_path / "ckpt")
    folder = tmp_path / "ckpt"
    (folder / "real").mkdir()
    (folder / "a.safetensors").rename(folder / "real" / "a.safetensors")
    os.symlink(folder / "real" / "a.safetensors", folder / "a.safetensors")
    assert sorted(seed_linear.read_checkpoint(index)) == ["fc.bias", "fc.weight"]


def test_missing_shard_is_refused(seed_linear, tmp_path):
    index = _two_shards(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "b.safetensors").unlink()
    folder = (tmp_path / "ckpt").absolute()
    assert _refusal(seed_linear, index) == (
        f"weight_map entry 'fc.bias': 'b.safetensors': no such file in {folder}"
    )


def test_tensor_missing_from_its_shard_is_refused(seed_linear, tmp_path):
    index = _two_shards(
        tmp_path / "ckpt", {"fc.weight": "a.safetensors", "fc.bias": "a.safetensors"}
    )
    assert _refusal(seed_linear, index) == (
        "the weight_map puts 'fc.bias' in 'a.safetensors', which lacks it"
    )


def test_tensor_listed_under_another_shard_is_refused(seed_linear, tmp_path):
    sd = _linear_state_dict()
    shards = {
        "a.safetensors": {"fc.weight": sd["fc.weight"], "fc.bias": sd["fc.bias"]},
        "b.safetensors": {"fc.bias": sd["fc.bias"]},
    }
    weight_map = {"fc.weight": "a.safetensors", "fc.bias": "b.safetensors"}
    index = _sharded(tmp_path / "ckpt", shards, weight_map)
    assert _refusal(seed_linear, index) == (
        "'a.safetensors' holds 'fc.bias', which the weight_map puts in 'b.safetensors'"
    )


def test_tensor_not_listed_is_refused(seed_linear, tmp_path):
    sd = _linear_state_dict()
    shards = {"a.safetensors": sd}
    index = _sharded(tmp_path / "ckpt", shards, {"fc.weight": "a.safetensors"})
    assert _refusal(seed_linear, index) == (
        "'a.safetensors' holds 'fc.bias', which the weight_map does not list"
    )


INDEXES = {
    "not json": (b"{not json", "not valid JSON"),
    "a list": (b"[1, 2]", 'expected a JSON object with a "weight_map" object'),
    "no weight_map": (b'{"metadata": {}}', 'with a "weight_map" object'),
    "weight_map a list": (b'{"weight_map": ["a"]}', 'with a "weight_map" object'),
    "metadata a string": (
        b'{"metadata": "x", "weight_map": {"fc.bias": "b.safetensors"}}',
        '"metadata" is not a JSON object',
    ),
    "empty weight_map": (b'{"weight_map": {}}', "the weight_map lists no tensors"),
    "shard not a string": (
        b'{"weight_map": {"fc.bias": 3}}',
        "weight_map entry 'fc.bias': 3 is not a .safetensors file name",
    ),
    "shard not safetensors": (
        b'{"weight_map": {"fc.bias": "b.bin"}}',
        "weight_map entry 'fc.bias': 'b.bin' is not a .safetensors file name",
    ),
    "duplicate key": (
        b'{"weight_map": {"fc.bias": "b.safetensors", "fc.bias": "a.safetensors"}}',
        "the index names 'fc.bias' twice",
    ),
}


@pytest.mark.parametrize("case", INDEXES, ids=INDEXES.keys())
def test_malformed_index_is_refused(seed_linear, tmp_path, case):
    content, reason = INDEXES[case]
    index = _two_shards(tmp_path / "ckpt")
    index.write_bytes(content)
    assert reason in _refusal(seed_linear, index)


def test_corrupt_shard_names_the_shard(seed_linear, tmp_path):
    index = _two_shards(tmp_path / "ckpt")
    shard = tmp_path / "ckpt" / "b.safetensors"
    shard.write_bytes(shard.read_bytes()[:-3])
    with pytest.raises(seed_linear.WeightLoadError) as caught:
        seed_linear.read_checkpoint(index)
    assert str(caught.value).startswith(f"{shard.resolve()}: corrupt checkpoint: ")


def test_a_bad_shape_in_one_shard_changes_no_weight(seed_linear, tmp_path):
    """All-or-nothing: the shape check covers every shard before any assignment."""
    sd = _linear_state_dict()
    shards = {
        "a.safetensors": {"fc.weight": sd["fc.weight"]},
        "b.safetensors": {"fc.bias": torch.zeros(6)},
    }
    index = _sharded(tmp_path / "ckpt", shards)
    model = seed_linear.build_model()
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(
        seed_linear.WeightLoadError, match=r"key 'fc.bias' .* has shape \(6,\)"
    ):
        seed_linear.load_weights(model, seed_linear.read_checkpoint(index))
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


# --- memory ----------------------------------------------------------------------


def test_each_mapped_tensor_is_released_after_assignment(tmp_path, monkeypatch):
    """load_weights hands back every tensor's pages, one assignment at a time."""
    module = parity.import_generated(GENERATED / "seed_cnn.py")
    torch_model = parity.randomize_(parity.build("examples.seed:SeedCNN"), seed=1)
    index = parity.save_sharded_checkpoint(torch_model, tmp_path / "s", shards=2)
    state_dict = module.read_checkpoint(index)
    released = []
    real = module._MappedTensors.release

    def spy(self, names):
        released.append(sorted(names))
        real(self, names)

    monkeypatch.setattr(module._MappedTensors, "release", spy)
    module.load_weights(module.build_model(), state_dict)
    checks, assignments = (
        released[: len(module.SOURCES)],
        released[len(module.SOURCES) :],
    )
    # First each key once as the up-front check finishes with it (a narrowing
    # cast's check reads it all), then what each assignment read.
    assert checks == [[key] for key in module.SOURCES]
    assert all(assignments), assignments
    assert sorted(k for names in assignments for k in names) == sorted(module.SOURCES)


def test_a_released_tensor_reads_back(seed_linear, tmp_path):
    path = tmp_path / "one.safetensors"
    save_file(_linear_state_dict(), str(path))
    state_dict = seed_linear.read_checkpoint(path)
    expected = state_dict["fc.weight"].copy()
    state_dict.release(state_dict)
    assert np.array_equal(state_dict["fc.weight"], expected)
