"""Parity between a PyTorch model and its generated Keras module.

Builds the PyTorch reference, gives it random weights that expose layout bugs,
saves them as a real checkpoint file, imports the generated module, and runs
both sides on the same input. Used by the demo, the tests and `verify`; never
by the compile path (it imports torch; call frameworks.import_torch_first()
before keras is imported).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


def build(factory: str) -> nn.Module:
    """`package.module:callable` -> the PyTorch model, in eval mode."""
    module_name, _, attribute = factory.partition(":")
    model = getattr(importlib.import_module(module_name), attribute)()
    return model.eval()


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every float parameter and buffer seeded random values, in place.

    Biases become non-zero and BatchNorm statistics leave (mean 0, var 1):
    PyTorch's initial values would make BatchNorm an identity and hide
    epsilon, ordering and transpose bugs.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not tensor.is_floating_point():
            continue
        if name.endswith("running_var"):
            values = torch.rand(tensor.shape, generator=generator) * 1.5 + 0.5
        else:
            fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
            values = torch.randn(tensor.shape, generator=generator) / fan_in**0.5
        tensor.copy_(values.to(tensor.dtype))
    return model


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Save the model's state dict as .pt, .safetensors or .npz (by suffix)."""
    path = Path(path)
    state_dict = {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state_dict, str(path))
    elif path.suffix in (".pt", ".pth", ".bin"):
        torch.save(state_dict, path)
    elif path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})
    else:
        raise ValueError(f"unknown checkpoint format {path.suffix!r}")
    return path


def save_sharded_checkpoint(
    model: nn.Module, folder: str | Path, shards: int, stem: str = "model"
) -> Path:
    """Save the state dict as `shards` .safetensors files plus the Hugging Face
    index, FOLDER/STEM.safetensors.index.json, which is returned.

    Keys go to shards in state-dict order, a new shard starting once the one
    being filled holds its share of the bytes, as Hugging Face's own sharding
    does (by size, not by key count).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state_dict = {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    sizes = {k: v.numel() * v.element_size() for k, v in state_dict.items()}
    share = -(-sum(sizes.values()) // shards)
    groups: list[dict[str, torch.Tensor]] = [{}]
    filled = 0
    for key, tensor in state_dict.items():
        if filled >= share and len(groups) < shards:
            groups.append({})
            filled = 0
        groups[-1][key] = tensor
        filled += sizes[key]
    weight_map = {}
    for number, group in enumerate(groups, 1):
        name = f"{stem}-{number:05d}-of-{len(groups):05d}.safetensors"
        save_file(group, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, name))
    index = folder / f"{stem}.safetensors.index.json"
    metadata = {"total_size": sum(sizes.values())}
    index.write_text(json.dumps({"metadata": metadata, "weight_map": weight_map}))
    return index


def channels_last(array: np.ndarray) -> np.ndarray:
    """PyTorch layout (N, C, *spatial) -> Keras layout (N, *spatial, C)."""
    if array.ndim < 3:
        return array
    return np.moveaxis(array, 1, -1)


def random_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A seeded float32 input in PyTorch layout."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def random_tokens(
    batch: int, length: int, vocab: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded int64 token ids (batch, length) and their attention mask.

    Row 0 is full length; the others end in padding (id 0, mask 0) after a
    random number of real tokens (ids 1..vocab-1, mask 1), at least one.
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(batch, length), dtype=np.int64)
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    return ids * mask, mask


def import_generated(path: str | Path):
    """Import a generated module from its file (generated/ is not a package)."""
    path = Path(path).resolve()
    name = f"torch2keras_generated_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def max_abs_error(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest absolute difference; inf when shapes differ or either side is not finite."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return float("inf")
    if not (np.isfinite(expected).all() and np.isfinite(actual).all()):
        return float("inf")
    return float(
        np.max(
            np.abs(expected.astype(np.float64) - actual.astype(np.float64)), initial=0.0
        )
    )


def torch_output(model: nn.Module, torch_layout_input: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(torch_layout_input)).numpy()


def keras_output(keras_model, torch_layout_input: np.ndarray) -> np.ndarray:
    """Run Keras on the same input, laid out channels-last; output back in PyTorch layout."""
    import keras

    result = keras_model(channels_last(torch_layout_input), training=False)
    result = keras.ops.convert_to_numpy(result)  # any backend's tensor
    return np.moveaxis(result, -1, 1) if result.ndim >= 3 else result


def keras_sequence_output(keras_model, inputs):
    """Run a sequence model on `inputs` (one array, or a dict by input name) as
    they are: (batch, time, ...) is the same layout in both frameworks
    (batch_first), so unlike keras_output nothing is moved. Returns an array,
    or a dict of arrays by output name for a model with several outputs."""
    import keras

    result = keras_model(inputs, training=False)
    if isinstance(result, dict):
        return {name: keras.ops.convert_to_numpy(r) for name, r in result.items()}
    return keras.ops.convert_to_numpy(result)
