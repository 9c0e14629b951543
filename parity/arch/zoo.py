"""The seed model zoo: standard-layer models converted by the generic path.

Each entry has a Keras reference in reference_keras/<name>.py (same name) and golden cases in
tests/golden_cases.py. Adding a zoo model = one entry here + one reference_keras module; the
conversion, parity, init and fine-tuning tests pick it up from this table.
"""

from __future__ import annotations

from parity.arch.generic import GenericArch

ZOO: dict[str, GenericArch] = {
    entry.name: entry
    for entry in (
        GenericArch(
            "embedding_mlp",
            "reference_keras.embedding_mlp",
            (("embedding", "Embedding"), ("hidden", "Dense"), ("output", "Dense")),
        ),
        GenericArch(
            "cnn",
            "reference_keras.cnn",
            (
                ("embedding", "Embedding"),
                ("conv_0", "Conv1D"),
                ("conv_1", "Conv1D"),
                ("hidden", "Dense"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "cnn_lstm",
            "reference_keras.cnn_lstm",
            (("embedding", "Embedding"), ("conv", "Conv1D"), ("lstm", "LSTM"), ("output", "Dense")),
        ),
        GenericArch(
            "stacked_rnn",
            "reference_keras.stacked_rnn",
            (
                ("embedding", "Embedding"),
                ("rnn_0", "SimpleRNN"),
                ("rnn_1", "SimpleRNN"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "bigru_classifier",
            "reference_keras.bigru_classifier",
            (
                ("embedding", "Embedding"),
                ("bi_gru_0", "Bidirectional(GRU)"),
                ("bi_gru_1", "Bidirectional(GRU)"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "bilstm_classifier",
            "reference_keras.bilstm_classifier",
            (
                ("embedding", "Embedding"),
                ("bi_lstm_0", "Bidirectional(LSTM)"),
                ("bi_lstm_1", "Bidirectional(LSTM)"),
                ("output", "Dense"),
            ),
        ),
        GenericArch(
            "lstm_regressor",
            "reference_keras.lstm_regressor",
            (("embedding", "Embedding"), ("lstm", "LSTM"), ("output", "Dense")),
        ),
    )
}
