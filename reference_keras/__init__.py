"""The Keras halves of keras-parity's model pairs: one module per pair, named as in parity/models.

Each module's ``build(...)`` returns the Keras 3 model the PyTorch port must match, and
``build_keras2(...)`` the same architecture in tf_keras (Keras 2), so tests can write the
legacy files users actually hold. Importing a submodule imports Keras; this package does not.
"""

PAIRS = ("embedding_dense", "deepmoji")
#: The seed model zoo (issue 4): converted by parity's generic path, no hand-written port; each
#: has build() / build_keras2() in its own module (shared plumbing in reference_keras.zoo).
ZOO = (
    "embedding_mlp",
    "cnn",
    "cnn_lstm",
    "stacked_rnn",
    "bigru_classifier",
    "bilstm_classifier",
    "lstm_regressor",
)
