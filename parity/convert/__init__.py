"""Keras weights -> torch parameters.

transforms  named layout changes between Keras and torch weights (and their inverses), and the
            normalisations of old layouts (Keras 1 per-gate arrays, CuDNN layers)
gates       which gate activation a recurrent layer computes, decided from the file
mapping     resolving a file's layers for a model; strict application of a mapping table
match       which architecture converts a file: one plan
"""
