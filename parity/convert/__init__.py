"""Keras weights -> torch parameters.

transforms  named layout changes between Keras and torch weights (and their inverses), and the
            normalisations of old layouts (Keras 1 per-gate arrays, CuDNN layers)
gates       which gate activation a recurrent layer computes, decided from the file
mapping     resolving a file's layers for a model; strict application of a mapping table
dtypes      the precision a file's model computes in
(which architecture converts a file is parity.arch.match: it knows the architectures)
"""
