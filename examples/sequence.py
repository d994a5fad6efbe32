"""PyTorch reference models for the sequence specs (specs/gru_classifier.yaml,
bilstm_tagger.yaml, transformer_encoder*.yaml, bert_small.yaml).

Small, fixed-size models built locally (no hub download); the tests give them
seeded random weights. Token ids are int64 of shape (batch, SEQ_LEN); id 0 is
padding. Models with attention take `attention_mask`, (batch, SEQ_LEN), 1 for
a real token and 0 for padding, as Hugging Face models do.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 1000
SEQ_LEN = 16


class GRUClassifier(nn.Module):
    """Embedding -> GRU -> Linear on the last hidden state."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32, padding_idx=0)
        self.gru = nn.GRU(32, 64, batch_first=True)
        self.fc = nn.Linear(64, 5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(self.embedding(ids))  # last: (num_layers, batch, 64)
        return self.fc(last[-1])


class BiLSTMTagger(nn.Module):
    """Embedding -> 2-layer bidirectional LSTM -> Linear on every step."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32, padding_idx=0)
        self.lstm = nn.LSTM(32, 48, num_layers=2, bidirectional=True, batch_first=True)
        self.tagger = nn.Linear(2 * 48, 9)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        steps, _ = self.lstm(self.embedding(ids))  # (batch, time, 2 * 48)
        return self.tagger(steps)


class TransformerEncoderModel(nn.Module):
    """Embedding -> nn.TransformerEncoder (2 layers, batch_first).

    `enable_nested_tensor=False` by default here: with it on (PyTorch's own
    default), inference with a padding mask runs on nested tensors and returns
    zeros at padded positions instead of what the layers compute there; the
    real positions are the same either way (tests/test_sequence.py).
    """

    def __init__(
        self,
        norm_first: bool = False,
        activation: str = "relu",
        enable_nested_tensor: bool = False,
    ):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 64, padding_idx=0)
        layer = nn.TransformerEncoderLayer(
            64,
            4,
            dim_feedforward=128,
            activation=activation,
            batch_first=True,
            norm_first=norm_first,
        )
        self.encoder = nn.TransformerEncoder(
            layer, 2, enable_nested_tensor=enable_nested_tensor
        )

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # PyTorch's key_padding_mask is True where a key is padding.
        padding = attention_mask == 0
        return self.encoder(self.embedding(ids), src_key_padding_mask=padding)


def transformer_encoder_prenorm() -> TransformerEncoderModel:
    """The pre-norm variant (norm_first=True) with exact GELU."""
    return TransformerEncoderModel(norm_first=True, activation="gelu")


def bert_small():
    """A small transformers BertModel with random weights, from a local config
    (no download). Called as model(input_ids, attention_mask, token_type_ids);
    its output has last_hidden_state and pooler_output."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",  # exact GELU (erf): Keras's "gelu"
        layer_norm_eps=1e-12,
    )
    return BertModel(config, add_pooling_layer=True)
