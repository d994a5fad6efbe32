"""Parity for the sequence specs: recurrent, attention and BERT models.

Each test saves seeded random PyTorch weights to a real checkpoint file,
converts it with the committed generated module and runs both on the SAME
int64 token ids (and attention mask), padding included: the outputs must
agree within 1e-4 everywhere, padded positions too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compiler import parity
from tests.conftest import GENERATED, SPECS
from tests.harness import compile_inline

TOLERANCE = 1e-4
VOCAB = 1000


def _convert(name: str, torch_model, tmp_path, suffix=".safetensors"):
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / f"{name}{suffix}")
    return parity.import_generated(GENERATED / f"{name}.py").convert(checkpoint)


def _check(name, expected, actual):
    error = parity.max_abs_error(expected, actual)
    print(
        f"{name}: max abs error {error:.3g}, max |output| {np.abs(expected).max():.3g}"
    )
    assert np.abs(expected).max() > 0.1  # not a comparison of two zeros
    assert error <= TOLERANCE
    return error


# --- recurrent models ------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize(
    "name, factory",
    [
        ("gru_classifier", "examples.sequence:GRUClassifier"),
        ("bilstm_tagger", "examples.sequence:BiLSTMTagger"),
    ],
)
def test_recurrent_model_matches_pytorch(name, factory, suffix, tmp_path):
    torch_model = parity.randomize_(parity.build(factory), seed=3)
    keras_model = _convert(name, torch_model, tmp_path, suffix)
    # Padded rows: a PyTorch RNN without packed sequences reads padding tokens
    # like any other, and so does Keras without mask_zero.
    ids, _ = parity.random_tokens(4, 16, VOCAB, seed=5)
    expected = parity.torch_output(torch_model, ids)
    actual = parity.keras_sequence_output(keras_model, ids)
    _check(name, expected, actual)


def _spec_with(name: str, old: str, new: str) -> str:
    text = (SPECS / f"{name}.yaml").read_text()
    assert old in text
    return text.replace(old, new)


def test_wrong_gru_gate_order_is_caught_by_parity(tmp_path):
    """The naive GRU port: transposed kernels, biases stacked, no gate reorder."""
    naive_gru = (
        "  - name: gru\n    keras: GRU\n    args: {units: 64}\n    weights:\n"
        "      gru_cell/kernel: {from: gru.weight_ih_l0, transform: [transpose]}\n"
        "      gru_cell/recurrent_kernel: {from: gru.weight_hh_l0, transform: [transpose]}\n"
        "      gru_cell/bias: {from: [gru.bias_ih_l0, gru.bias_hh_l0], transform: [stack]}\n"
    )
    text = _spec_with(
        "gru_classifier",
        "  - {name: gru, keras: GRU, torch: gru, args: {units: 64, unroll: true}}",
        naive_gru.rstrip("\n"),
    )
    naive = compile_inline(tmp_path, text, name="gru_classifier")
    torch_model = parity.randomize_(parity.build("examples.sequence:GRUClassifier"), 3)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / "gru.safetensors")
    ids, _ = parity.random_tokens(4, 16, VOCAB, seed=5)
    expected = parity.torch_output(torch_model, ids)

    wrong = parity.import_generated(naive.output_path).convert(checkpoint)
    right = parity.import_generated(GENERATED / "gru_classifier.py").convert(checkpoint)
    wrong_error = parity.max_abs_error(
        expected, parity.keras_sequence_output(wrong, ids)
    )
    right_error = parity.max_abs_error(
        expected, parity.keras_sequence_output(right, ids)
    )
    print(f"GRU without gate reorder: {wrong_error:.3g}; with: {right_error:.3g}")
    assert wrong_error > 0.05 and right_error <= TOLERANCE


def test_missing_lstm_bias_sum_is_caught_by_parity(tmp_path):
    """Only bias_ih copied (bias_hh ignored): plausible numbers, wrong ones."""
    text = _spec_with(
        "bilstm_tagger",
        "  - {name: lstm2, keras: Bidirectional, torch: lstm, args: "
        "{layer: LSTM, units: 48, return_sequences: true, torch_layer: 1}}",
        "  - name: lstm2\n    keras: Bidirectional\n    torch: lstm\n"
        "    args: {layer: LSTM, units: 48, return_sequences: true, torch_layer: 1}\n"
        "    weights:\n"
        "      forward_lstm/lstm_cell/bias: {from: lstm.bias_ih_l1}\n"
        "      backward_lstm/lstm_cell/bias: {from: lstm.bias_ih_l1_reverse}",
    )
    text = text.replace(
        "outputs: [tagger]",
        "outputs: [tagger]\nignore: [lstm.bias_hh_l1, lstm.bias_hh_l1_reverse]",
    )
    naive = compile_inline(tmp_path, text, name="bilstm_tagger")
    torch_model = parity.randomize_(parity.build("examples.sequence:BiLSTMTagger"), 3)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / "lstm.safetensors")
    ids, _ = parity.random_tokens(4, 16, VOCAB, seed=5)
    expected = parity.torch_output(torch_model, ids)
    wrong = parity.import_generated(naive.output_path).convert(checkpoint)
    error = parity.max_abs_error(expected, parity.keras_sequence_output(wrong, ids))
    print(f"LSTM with bias_ih only: {error:.3g}")
    assert error > 0.05


def test_bidirectional_model_saves_and_reloads_in_safe_mode(tmp_path):
    import keras

    torch_model = parity.randomize_(parity.build("examples.sequence:BiLSTMTagger"), 1)
    keras_model = _convert("bilstm_tagger", torch_model, tmp_path)
    keras_model.save(tmp_path / "tagger.keras")
    reloaded = keras.saving.load_model(tmp_path / "tagger.keras", safe_mode=True)
    ids, _ = parity.random_tokens(2, 16, VOCAB, seed=2)
    _check(
        "bilstm_tagger reloaded",
        parity.torch_output(torch_model, ids),
        parity.keras_sequence_output(reloaded, ids),
    )


# --- attention models --------------------------------------------------------


def _encoder_outputs(torch_model, keras_model, seed=5):
    ids, mask = parity.random_tokens(4, 16, VOCAB, seed=seed)
    assert (mask == 0).any()  # padded positions are part of the comparison
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    actual = parity.keras_sequence_output(
        keras_model, {"ids": ids, "attention_mask": mask}
    )
    return ids, mask, expected, actual


@pytest.mark.parametrize(
    "name, factory",
    [
        ("transformer_encoder", "examples.sequence:TransformerEncoderModel"),
        (
            "transformer_encoder_prenorm",
            "examples.sequence:transformer_encoder_prenorm",
        ),
    ],
)
def test_transformer_encoder_matches_pytorch(name, factory, tmp_path):
    torch_model = parity.randomize_(parity.build(factory), seed=3)
    keras_model = _convert(name, torch_model, tmp_path)
    ids, mask, expected, actual = _encoder_outputs(torch_model, keras_model)
    _check(name, expected, actual)
    padded = mask == 0
    print(
        f"  at padded positions: {parity.max_abs_error(expected[padded], actual[padded]):.3g}"
    )

    # The mask is really applied: without it, the real positions of padded rows change.
    unmasked = parity.keras_sequence_output(
        keras_model, {"ids": ids, "attention_mask": np.ones_like(mask)}
    )
    real_of_padded_rows = (mask == 1) & padded.any(axis=1, keepdims=True)
    assert (
        parity.max_abs_error(
            expected[real_of_padded_rows], unmasked[real_of_padded_rows]
        )
        > 1e-2
    )


def test_pytorch_nested_tensor_fast_path_zeroes_padded_positions(tmp_path):
    """PyTorch's default (enable_nested_tensor=True) returns 0 at padded
    positions at inference; the converted model computes them as the layers
    define (what enable_nested_tensor=False gives). Real positions agree."""
    from examples.sequence import TransformerEncoderModel

    torch_model = parity.randomize_(
        parity.build("examples.sequence:TransformerEncoderModel"), 3
    )
    nested = TransformerEncoderModel(enable_nested_tensor=True).eval()
    nested.load_state_dict(torch_model.state_dict())
    keras_model = _convert("transformer_encoder", torch_model, tmp_path)
    ids, mask, expected, actual = _encoder_outputs(nested, keras_model)
    real, padded = mask == 1, mask == 0
    assert np.abs(expected[padded]).max() == 0.0
    assert np.abs(actual[padded]).max() > 0.1
    assert parity.max_abs_error(expected[real], actual[real]) <= TOLERANCE


# --- BERT ------------------------------------------------------------------


def _bert_inputs(seed=5):
    ids, mask = parity.random_tokens(4, 16, VOCAB, seed=seed)
    # Two segments, as for a sentence pair: token type 1 from position 8 on.
    token_types = np.broadcast_to((np.arange(16) >= 8).astype(np.int64), ids.shape)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": np.ascontiguousarray(token_types),
    }


def _bert_outputs(torch_model, keras_model, inputs):
    with torch.no_grad():
        out = torch_model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    actual = parity.keras_sequence_output(keras_model, inputs)
    return (
        # Keyed by the spec's output names, not the layers behind them.
        (out.last_hidden_state.numpy(), actual["encoder"]),
        (out.pooler_output.numpy(), actual["pooler"]),
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_bert_matches_transformers(suffix, tmp_path):
    torch_model = parity.randomize_(parity.build("examples.sequence:bert_small"), 3)
    keras_model = _convert("bert_small", torch_model, tmp_path, suffix)
    inputs = _bert_inputs()
    assert (inputs["attention_mask"] == 0).any()
    (hidden, keras_hidden), (pooled, keras_pooled) = _bert_outputs(
        torch_model, keras_model, inputs
    )
    _check("bert_small last_hidden_state", hidden, keras_hidden)
    _check("bert_small pooler_output", pooled, keras_pooled)


def test_bert_with_custom_position_layer_saves_and_reloads(tmp_path):
    import keras

    torch_model = parity.randomize_(parity.build("examples.sequence:bert_small"), 4)
    keras_model = _convert("bert_small", torch_model, tmp_path)
    keras_model.save(tmp_path / "bert.keras")
    reloaded = keras.saving.load_model(tmp_path / "bert.keras", safe_mode=True)
    assert "Lambda" not in {type(layer).__name__ for layer in reloaded.layers}
    inputs = _bert_inputs(seed=6)
    for expected, actual in _bert_outputs(torch_model, reloaded, inputs):
        _check("bert_small reloaded", expected, actual)


# --- rendering -------------------------------------------------------------


def test_long_names_and_keys_render_ruff_stable(tmp_path):
    """Long layer names and keys take the multi-line forms (a wrapped layer
    exploded, a combination of keys built up in statements); ruff keeps them."""
    from tests.test_drift import _ruff

    prefix = "encoder.stack_of_recurrent_layers_with_a_long_name"
    name = "bidirectional_recurrent_layer_with_a_rather_long_name"
    generated = compile_inline(
        tmp_path,
        f"""\
        spec: 1
        name: long_names
        inputs:
          tokens_with_a_long_input_name: {{shape: [6], dtype: int64}}
        layers:
          - {{name: embedding, keras: Embedding, torch: emb, args: {{input_dim: 10, output_dim: 4}}}}
          - {{name: {name}, keras: Bidirectional, torch: {prefix}, args: {{layer: GRU, units: 8, return_sequences: true, use_bias: true}}}}
        outputs: [{name}]
        """,
    )
    source = generated.source
    assert (
        f"    {name} = keras.layers.Bidirectional(\n        keras.layers.GRU(\n"
        in source
    )
    assert f'    part0 = sd["{prefix}.bias_ih_l0"]\n' in source
    path = generated.output_path
    check = _ruff("format", "--check", "--diff", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert _ruff("check", str(path)).returncode == 0
    module = parity.import_generated(path)
    assert len(module.build_model().weights) == 1 + 6


# --- recurrent layer semantics -----------------------------------------------


class _LastStates(nn.Module):
    """A PyTorch RNN returning its last layer's final state(s), both directions
    concatenated: what a Keras RNN gives with return_sequences false."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        _, state = self.rnn(x)
        if isinstance(state, tuple):  # LSTM: (h_n, c_n)
            state = state[0]
        directions = 2 if self.rnn.bidirectional else 1
        return torch.cat(list(state[-directions:]), dim=-1)


def _rnn_parity(tmp_path, torch_rnn, layers_yaml, x_keras, x_torch, name):
    generated = compile_inline(
        tmp_path,
        f"""\
        spec: 1
        name: {name}
        inputs:
          x: {{shape: {list(x_keras.shape[1:])}}}
        layers:
        {layers_yaml}
        outputs: [out]
        """,
        name=name,
    )
    model = parity.randomize_(_LastStates(torch_rnn).eval(), seed=2)
    checkpoint = parity.save_checkpoint(model, tmp_path / f"{name}.safetensors")
    keras_model = parity.import_generated(generated.output_path).convert(checkpoint)
    with torch.no_grad():
        expected = model(torch.from_numpy(x_torch)).numpy()
    actual = parity.keras_sequence_output(keras_model, x_keras)
    return _check(name, expected, actual)


def test_stacked_bidirectional_gru_last_state_is_pytorch_h_n(tmp_path):
    x = parity.random_input((3, 7, 5), seed=1)
    _rnn_parity(
        tmp_path,
        nn.GRU(5, 6, num_layers=2, bidirectional=True, batch_first=True),
        """\
          - {name: l0, keras: Bidirectional, torch: rnn, args: {layer: GRU, units: 6, return_sequences: true}}
                  - {name: out, keras: Bidirectional, torch: rnn, args: {layer: GRU, units: 6, torch_layer: 1}}""",
        x,
        x,
        "bigru",
    )


def test_rnn_without_batch_first_takes_the_input_transposed(tmp_path):
    """The weights are the same; only the PyTorch input is (time, batch, features)."""

    x = parity.random_input((3, 7, 5), seed=1)  # Keras: (batch, time, features)
    _rnn_parity(
        tmp_path,
        nn.LSTM(5, 6, num_layers=2),  # batch_first=False
        """\
          - {name: l0, keras: LSTM, torch: rnn, args: {units: 6, return_sequences: true}}
                  - {name: out, keras: LSTM, torch: rnn, args: {units: 6, torch_layer: 1}}""",
        x,
        np.ascontiguousarray(x.transpose(1, 0, 2)),
        "lstm_time_major",
    )
