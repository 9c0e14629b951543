"""Golden TensorFlow checkpoint: `python -m tests.golden_tf_checkpoint` (keras extra installed).

Writes, under tests/golden/tf_checkpoint/, a small tf-keras 2.21 bilstm_classifier as
- bilstm_classifier/weights.{index,data-00000-of-00001}: ``model.save_weights`` (TF format),
- bilstm_classifier.json: its ``model.to_json()`` (the ``config=`` of the checkpoint),
- bilstm_classifier_saved_model/: ``model.save(dir, save_format="tf", save_traces=False)``
  without saved_model.pb and fingerprint.pb (parity reads keras_metadata.pb and variables/
  only; the graph is ~50 KB that no test reads),
- bilstm_classifier.npz: Keras' outputs and gradients for parity's check harness,
so tests/test_tf_checkpoint.py checks checkpoint conversion where TensorFlow is absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OUT = Path(__file__).resolve().parent / "golden" / "tf_checkpoint"
NAME = "bilstm_classifier"
SIZES = {"vocab_size": 40, "seq_len": 12, "embedding_dim": 6, "units": 4}
SEED = 21


def main() -> None:
    import tf_keras

    from parity.api import convert_keras
    from parity.check import subject_for
    from parity.check.keras_side import keras_side, weight_variables, write_golden
    from parity.check.run import check_inputs
    from reference_keras import bilstm_classifier

    tf_keras.utils.set_random_seed(SEED)
    model = bilstm_classifier.build_keras2(**SIZES)
    rng = np.random.default_rng(SEED)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.4 for w in model.weights])
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    prefix = OUT / NAME / "weights"
    model.save_weights(str(prefix))
    (prefix.parent / "checkpoint").unlink()  # TF's bookkeeping file, not needed to read it
    config = OUT / f"{NAME}.json"
    config.write_text(model.to_json())
    saved = OUT / f"{NAME}_saved_model"
    model.save(str(saved), save_format="tf", save_traces=False, include_optimizer=False)
    for extra in ("saved_model.pb", "fingerprint.pb"):
        (saved / extra).unlink()
    shutil.rmtree(saved / "assets", ignore_errors=True)

    converted = convert_keras(prefix, config=config)
    subject, keras_args = subject_for(converted.model, converted.kfile)
    ids = check_inputs(converted.model, converted.kfile)
    golden = keras_side(
        model,
        subject.pair,
        ids.astype(np.int32),
        activation_points=keras_args["activation_points"],
        variables=weight_variables(model, keras_args["layer_names"], keras_args["weights"]),
        extra_meta={"source": f"{NAME}/weights", "writer": f"tf_keras {tf_keras.__version__}"},
    )
    write_golden(OUT / f"{NAME}.npz", golden)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
