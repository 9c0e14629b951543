"""The Keras halves of keras-parity's model pairs: one module per pair, named as in parity/arch.

Each module's ``build(...)`` returns the Keras 3 model the PyTorch port must match, and
``build_keras2(...)`` the same architecture in tf_keras (Keras 2), so tests can write the
legacy files users actually hold. Importing a submodule imports Keras; this package does not.
The names of the pairs and seed-zoo models are listed once, in parity.arch (PAIRS, ZOO).
"""
