"""Hostile, broken and half-precision checkpoints, as the generated module reads them.

- A .pt whose pickle would run code is refused, naming the global, and the code
  never runs, whatever TORCH_FORCE_*WEIGHTS_ONLY_LOAD say.
- A broken .safetensors file (each kind crafted by hand) is a "corrupt
  checkpoint" error naming the file, never a crash or a half-read dict.
- float16 and bfloat16 weights arrive in float32 Keras weights exactly; a cast
  that changes values or kind is refused unless the spec says allow_lossy_cast.
"""

from __future__ import annotations

import json
import os
import shlex
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from compiler import build, parity, write
from tests.conftest import GENERATED

SPEC = """\
spec: 1
name: tiny
inputs:
  x: {shape: [4]}
layers:
  - {name: fc, keras: Dense, args: {units: 3}, torch: fc}
outputs: [fc]
"""


@pytest.fixture(scope="module")
def seed_linear():
    return parity.import_generated(GENERATED / "seed_linear.py")


def _compile(folder, text, stem):
    (folder / "specs").mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text("")
    spec = folder / "specs" / f"{stem}.yaml"
    spec.write_text(text)
    generated = build.generate(spec)
    write.write_atomic(generated.output_path, generated.source)
    return parity.import_generated(generated.output_path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("strict"), SPEC, "tiny_strict")


@pytest.fixture(scope="module")
def tiny_lossy(tmp_path_factory):
    text = SPEC + "allow_lossy_cast: true\n"
    return _compile(tmp_path_factory.mktemp("lossy"), text, "tiny_lossy")


# --- a .pt that would run code -------------------------------------------------


class _Exec:
    """Unpickling this calls exec(), which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


class _System(_Exec):
    """Unpickling this runs a shell command, which creates the marker file."""

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


# Payload -> the global torch names when it refuses it.
PAYLOADS = {_Exec: "exec", _System: f"{os.system.__module__}.system"}


ENVIRONMENTS = {
    "no env": {},
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
    "TORCH_FORCE_WEIGHTS_ONLY_LOAD": {"TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"},
    "both": {
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
        "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1",
    },
}


def _malicious_checkpoint(tmp_path, payload, zipfile: bool):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    state_dict = {"fc.weight": torch.zeros(5, 10), "fc.bias": payload(marker)}
    torch.save(state_dict, path, _use_new_zipfile_serialization=zipfile)
    return path, marker


@pytest.mark.parametrize("payload", PAYLOADS, ids=PAYLOADS.values())
@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_the_payload_is_real(tmp_path, payload, zipfile):
    """Control: an unsafe load of the same file does run the payload."""
    path, marker = _malicious_checkpoint(tmp_path, payload, zipfile)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS, ids=PAYLOADS.values())
@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("env", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
def test_pickle_that_runs_code_is_refused(
    seed_linear, tmp_path, monkeypatch, payload, zipfile, env
):
    path, marker = _malicious_checkpoint(tmp_path, payload, zipfile)
    for name in ENVIRONMENTS["both"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(seed_linear.WeightLoadError) as caught:
        seed_linear.read_checkpoint(path)
    assert not marker.exists()
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    if len(env) < 2:
        assert message == (
            f"{path}: refused: loading it would call {PAYLOADS[payload]}, which a state "
            "dict of tensors never needs (save model.state_dict(), or .safetensors)"
        )
    else:  # torch itself refuses to choose between the two variables
        assert "cannot load checkpoint: RuntimeError: Only one of" in message


def test_training_checkpoint_is_named(seed_linear, tmp_path):
    path = tmp_path / "train.pt"
    torch.save({"fc.weight": torch.zeros(5, 10), "epoch": 3}, path)
    with pytest.raises(seed_linear.WeightLoadError, match="'epoch' holds a int"):
        seed_linear.read_checkpoint(path)


def test_garbage_pt_is_an_error_naming_the_file(seed_linear, tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(seed_linear.WeightLoadError) as caught:
        seed_linear.read_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: cannot load checkpoint: ")


def test_npz_with_pickled_objects_is_refused(seed_linear, tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, **{"fc.weight": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(seed_linear.WeightLoadError, match="allow_pickle=False"):
        seed_linear.read_checkpoint(path)


# --- broken .safetensors files, crafted by hand ---------------------------------


def _safetensors(header, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _f32(shape, begin, end):
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


VALID = _safetensors({"fc.bias": _f32([2], 0, 8)}, struct.pack("<2f", 1.5, -2.0))

CORRUPT = {
    "empty": (b"", "0 bytes, too short for a header"),
    "short": (b"\x10\x00", "2 bytes, too short for a header"),
    "truncated header": (VALID[:20], "the header claims"),
    "truncated data": (VALID[:-3], "the data is 5 bytes but its tensors cover 8"),
    "not json": (_safetensors(b"{not json"), "the header is not valid JSON"),
    "not utf-8": (_safetensors(b'{"\xff": 1}'), "the header is not valid JSON"),
    "json list": (_safetensors([1, 2]), "the header is not a JSON object"),
    "duplicate name": (
        _safetensors(
            b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
            b'"w": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}',
            b"\0" * 4,
        ),
        "the header names 'w' twice",
    ),
    "overlap": (
        _safetensors({"a": _f32([2], 0, 8), "b": _f32([2], 4, 12)}, b"\0" * 12),
        "tensors 'a' and 'b' overlap",
    ),
    "out of range": (
        _safetensors({"a": _f32([2], 0, 8), "b": _f32([2], 8, 16)}, b"\0" * 8),
        "the data is 8 bytes but its tensors cover 16",
    ),
    "gap": (
        _safetensors({"a": _f32([1], 4, 8)}, b"\0" * 8),
        "bytes 0..4 belong to no tensor",
    ),
    "size mismatch": (
        _safetensors({"a": _f32([3], 0, 8)}, b"\0" * 8),
        "tensor 'a': F32 [3] needs 12 bytes, its offsets span 8",
    ),
    "backwards": (
        _safetensors({"a": _f32([0], 8, 4)}, b"\0" * 8),
        "tensor 'a': data_offsets [8, 4] run backwards",
    ),
    "negative offset": (
        _safetensors({"a": _f32([1], -4, 0)}, b"\0" * 4),
        "tensor 'a': bad data_offsets [-4, 0]",
    ),
    "bool shape": (
        _safetensors({"a": _f32([True], 0, 4)}, b"\0" * 4),
        "tensor 'a': bad shape [True]",
    ),
    "missing field": (
        _safetensors({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4),
        "tensor 'a': expected dtype, shape, data_offsets",
    ),
}


def test_oversized_safetensors_header_is_refused(seed_linear, tmp_path, monkeypatch):
    monkeypatch.setattr(seed_linear, "_MAX_SAFETENSORS_HEADER", 16)
    path = tmp_path / "big.safetensors"
    path.write_bytes(VALID)
    with pytest.raises(seed_linear.WeightLoadError) as caught:
        seed_linear.read_checkpoint(path)
    header = len(VALID) - 8 - 8
    assert str(caught.value) == (
        f"{path}: corrupt checkpoint: a {header}-byte header is not a safetensors header"
    )


@pytest.mark.parametrize("case", CORRUPT, ids=CORRUPT.keys())
def test_corrupt_safetensors_is_named(seed_linear, tmp_path, case):
    content, reason = CORRUPT[case]
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(seed_linear.WeightLoadError) as caught:
        seed_linear.read_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: corrupt checkpoint: "), message
    assert reason in message


def test_unknown_safetensors_dtype(seed_linear, tmp_path):
    path = tmp_path / "fp8.safetensors"
    path.write_bytes(
        _safetensors({"a": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}})
        + b"\0"
    )
    with pytest.raises(
        seed_linear.WeightLoadError,
        match="tensor 'a' has dtype 'F8_E4M3', which this reader does not support",
    ):
        seed_linear.read_checkpoint(path)


def test_valid_handmade_safetensors_reads(seed_linear, tmp_path):
    path = tmp_path / "ok.safetensors"
    path.write_bytes(VALID)
    (key, value), *rest = seed_linear.read_checkpoint(path).items()
    assert not rest and key == "fc.bias"
    assert value.dtype == np.float32 and value.tolist() == [1.5, -2.0]


def test_safetensors_library_files_read_back_exactly(seed_linear, tmp_path):
    """Every dtype the reader knows, written by the safetensors library itself,
    with metadata and a zero-size tensor."""
    generator = torch.Generator().manual_seed(0)
    tensors = {
        str(dtype): (torch.randn(3, 2, generator=generator) * 100).to(dtype)
        for dtype in (
            torch.float64,
            torch.float32,
            torch.float16,
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int8,
            torch.uint8,
            torch.bool,
        )
    }
    tensors["empty"] = torch.zeros(0, 3)
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    loaded = seed_linear.read_checkpoint(path)
    assert loaded.keys() == tensors.keys()
    for key, tensor in tensors.items():
        assert loaded[key].dtype == tensor.numpy().dtype, key
        assert np.array_equal(loaded[key], tensor.numpy()), key


# --- float16 / bfloat16 in, float32 out, exactly ----------------------------------


def _half_state_dict(dtype):
    generator = torch.Generator().manual_seed(3)
    return {
        "fc.weight": torch.randn(3, 4, generator=generator).to(dtype),
        "fc.bias": (torch.randn(3, generator=generator) * 1e3).to(dtype),
    }


def _save(state_dict, path):
    if path.suffix == ".safetensors":
        save_file(state_dict, str(path))
    else:
        torch.save(state_dict, path)
    return path


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_checkpoints_load_exactly(tiny, tmp_path, suffix, dtype):
    state_dict = _half_state_dict(dtype)
    checkpoint = _save(state_dict, tmp_path / f"half{suffix}")
    model = tiny.convert(checkpoint)
    kernel, bias = (w.numpy() for w in model.weights)
    assert kernel.dtype == bias.dtype == np.float32
    # Every float16/bfloat16 value is a float32 value: equality, not closeness.
    assert np.array_equal(kernel, state_dict["fc.weight"].float().numpy().T)
    assert np.array_equal(bias, state_dict["fc.bias"].float().numpy())
    assert len(np.unique(kernel)) == kernel.size  # real values, not zeros


def test_bfloat16_decoding_agrees_with_torch_on_special_values(seed_linear, tmp_path):
    values = torch.tensor(
        [0.0, -0.0, 1.0, -2.5, 3.0e38, -1.0e-38, 9.2e-41, float("inf"), float("nan")]
    ).to(torch.bfloat16)
    path = _save({"v": values}, tmp_path / "special.safetensors")
    decoded = seed_linear.read_checkpoint(path)["v"]
    expected = values.float().numpy()
    assert decoded.dtype == np.float32
    assert np.array_equal(decoded.view(np.uint32), expected.view(np.uint32))


def test_bfloat16_tensors_and_arrays_load_directly(tiny):
    """load_weights takes bfloat16 torch tensors and ml_dtypes arrays as they are."""
    import ml_dtypes

    state_dict = _half_state_dict(torch.bfloat16)
    arrays = {
        k: v.float().numpy().astype(ml_dtypes.bfloat16) for k, v in state_dict.items()
    }
    for given in (state_dict, arrays):
        model = tiny.build_model()
        tiny.load_weights(model, given)
        assert np.array_equal(
            model.weights[0].numpy(), state_dict["fc.weight"].float().numpy().T
        )


# --- casts that lose something --------------------------------------------------


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def _float64_state_dict(exact: bool):
    rng = np.random.default_rng(5)
    weight = rng.standard_normal((3, 4))
    if exact:  # float32 values held in float64
        weight = weight.astype(np.float32).astype(np.float64)
    return {"fc.weight": weight, "fc.bias": np.arange(3, dtype=np.float64)}


def test_lossy_float64_is_refused_naming_the_key(tiny):
    model = tiny.build_model()
    before = _weights(model)
    with pytest.raises(tiny.WeightLoadError) as caught:
        tiny.load_weights(model, _float64_state_dict(exact=False))
    spec = tiny.SPEC
    assert str(caught.value) == (
        f"state dict does not fit {spec}:\n"
        f"  'fc.weight' -> fc/kernel: casting float64 to float32 changes its values "
        f"({spec}:6); cast the checkpoint yourself, or accept it with "
        f"`allow_lossy_cast: true` in {spec}"
    )
    # Nothing was assigned, not even fc.bias, whose float64 values were exact.
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(model)))


def test_exact_float64_is_accepted(tiny):
    state_dict = _float64_state_dict(exact=True)
    model = tiny.build_model()
    tiny.load_weights(model, state_dict)
    assert np.array_equal(model.weights[0].numpy(), state_dict["fc.weight"].T)


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.bool_, np.complex64])
def test_a_different_kind_is_refused_even_when_exact(tiny, dtype):
    state_dict = {
        "fc.weight": np.ones((3, 4), dtype),
        "fc.bias": np.zeros(3, np.float32),
    }
    with pytest.raises(tiny.WeightLoadError) as caught:
        tiny.load_weights(tiny.build_model(), state_dict)
    assert (
        f"'fc.weight' -> fc/kernel: a {np.dtype(dtype)} checkpoint value for a "
        "float32 weight" in str(caught.value)
    )
    assert "allow_lossy_cast: true" in str(caught.value)


def test_allow_lossy_cast_accepts_it(tiny_lossy):
    assert tiny_lossy.ALLOW_LOSSY_CAST is True
    state_dict = _float64_state_dict(exact=False)
    state_dict["fc.bias"] = np.array([1, 2, 3], np.int64)
    model = tiny_lossy.build_model()
    tiny_lossy.load_weights(model, state_dict)
    assert np.array_equal(
        model.weights[0].numpy(), state_dict["fc.weight"].T.astype(np.float32)
    )
    assert model.weights[1].numpy().tolist() == [1.0, 2.0, 3.0]


def test_committed_modules_refuse_lossy_casts(seed_linear):
    assert seed_linear.ALLOW_LOSSY_CAST is False
