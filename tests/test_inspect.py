"""`torch2keras inspect`: keys, dtypes, shapes and sizes of a checkpoint file."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from compiler import cli, inspect_checkpoint


def _state_dict(with_bfloat16: bool = True) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state_dict = {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=generator),
        "conv.bias": torch.randn(8, generator=generator),
        "bn.num_batches_tracked": torch.tensor(5),
        "half.weight": torch.randn(4, 5, generator=generator).half(),
        "ids": torch.arange(6, dtype=torch.int32).reshape(2, 3),
    }
    if with_bfloat16:  # numpy (and so .npz) has no bfloat16
        state_dict["bf16.weight"] = torch.randn(3, generator=generator).bfloat16()
    return state_dict


def _save(state_dict, path):
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state_dict, str(path))
    elif path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})
    else:
        torch.save(state_dict, path)
    return path


def _expected(state_dict):
    return [
        (
            key,
            str(tensor.dtype).removeprefix("torch."),
            tuple(tensor.shape),
            tensor.numel(),
            tensor.numel() * tensor.element_size(),
        )
        for key, tensor in sorted(state_dict.items())
    ]


def _listed(path):
    return [
        (t.key, t.dtype, t.shape, t.params, t.bytes)
        for t in inspect_checkpoint.inspect(path).tensors
    ]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".bin", ".npz"])
def test_lists_what_was_saved(suffix, tmp_path, capsys):
    state_dict = _state_dict(with_bfloat16=suffix != ".npz")
    path = _save(state_dict, tmp_path / f"model{suffix}")
    assert _listed(path) == _expected(state_dict)

    assert cli.main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["key", "dtype", "shape", "params"]
    assert [line.split()[0] for line in lines[1:-1]] == sorted(state_dict)
    # Aligned: every row's dtype column starts where the header's does.
    column = lines[0].index("dtype")
    for line, (_, dtype, *_) in zip(lines[1:-1], _expected(state_dict)):
        assert line[column:].startswith(dtype)
    params = sum(t.numel() for t in state_dict.values())
    size = sum(t.numel() * t.element_size() for t in state_dict.values())
    assert lines[-1] == (
        f"{path}: {len(state_dict)} tensors, {params:,} parameters, {size:,} bytes "
        f"({size} B)"
    )
    conv = next(line for line in lines if line.startswith("conv.weight"))
    assert conv.split() == ["conv.weight", "float32", "[8,", "3,", "3,", "3]", "216"]


def test_json_output(tmp_path, capsys):
    state_dict = _state_dict()
    path = _save(state_dict, tmp_path / "model.safetensors")
    assert cli.main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [
        (t["key"], t["dtype"], tuple(t["shape"]), t["params"], t["bytes"])
        for t in data["tensors"]
    ] == _expected(state_dict)
    assert data["total_tensors"] == len(state_dict)
    assert data["total_params"] == sum(t.numel() for t in state_dict.values())
    assert data["total_bytes"] == sum(
        t.numel() * t.element_size() for t in state_dict.values()
    )


def test_safetensors_is_listed_from_its_header_alone(tmp_path):
    state_dict = _state_dict()
    path = _save(state_dict, tmp_path / "model.safetensors")
    data = path.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    # Cut the file right after its header: no tensor data is left to read.
    path.write_bytes(data[: 8 + header_length])
    from safetensors.numpy import load_file

    with pytest.raises(Exception):  # noqa: B017 - any error: the payload is gone
        load_file(str(path))
    assert _listed(path) == _expected(state_dict)


def test_nested_pt_checkpoint(tmp_path, capsys):
    state_dict = _state_dict()
    path = _save({"model": state_dict, "epoch": 3}, tmp_path / "train.pt")
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert _listed(path) == [
        (f"model.{key}", *rest) for key, *rest in _expected(state_dict)
    ]
    assert out.splitlines()[-1] == "not tensors, not listed (1): epoch"


def test_legacy_pt_format_cannot_be_memory_mapped_and_is_read_anyway(tmp_path):
    state_dict = _state_dict()
    path = tmp_path / "legacy.pt"
    torch.save(state_dict, path, _use_new_zipfile_serialization=False)
    assert _listed(path) == _expected(state_dict)


@pytest.mark.parametrize(
    "name, content, status, message",
    [
        ("weights.h5", b"HDF", 2, "unknown checkpoint format '.h5'; expected one of"),
        ("weights", b"", 2, "unknown checkpoint format '(no suffix)'"),
        ("bad.safetensors", b"\xff" * 16, 1, "header length"),
        ("short.safetensors", b"\x01", 1, "too short for a safetensors header"),
        ("bad.npz", b"not a zip", 1, "cannot read as .npz: BadZipFile"),
        ("bad.pt", b"{}", 1, "cannot read as .pt: "),
    ],
)
def test_unreadable_files_are_named(name, content, status, message, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(content)
    assert cli.main(["inspect", str(path)]) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {path}: ")
    assert message in captured.err


def test_missing_file(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "nope.pt")]) == 2
    assert capsys.readouterr().err == (
        f"{tmp_path / 'nope.pt'}: error: no such checkpoint file\n"
    )
