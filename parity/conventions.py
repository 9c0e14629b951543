"""Every Keras behaviour keras-parity reproduces, as a named constant with its source.

Numbers that encode a Keras behaviour live here and nowhere else, so a reader can check each
one against the Keras source it cites.
"""

from __future__ import annotations

# --- hard sigmoid -----------------------------------------------------------------------------
# Keras 1/2, Theano, tf.keras (tf_keras/src/backend.py hard_sigmoid): clip(0.2 * x + 0.5, 0, 1).
HARD_SIGMOID_KERAS2_SLOPE = 0.2
HARD_SIGMOID_KERAS2_OFFSET = 0.5
# Keras 3 (keras/src/activations/activations.py hard_sigmoid): relu6(x + 3) / 6,
# i.e. clip(x / 6 + 0.5, 0, 1); bit-equal to torch.nn.functional.hardsigmoid.
HARD_SIGMOID_KERAS3_SLOPE = 1.0 / 6.0
HARD_SIGMOID_KERAS3_OFFSET = 0.5

#: The names load_keras(hard_sigmoid=...) and the CLI accept.
HARD_SIGMOID_VARIANTS = ("keras2", "keras3")
#: Keras versions below this major use the 0.2-slope hard sigmoid.
HARD_SIGMOID_KERAS3_FROM_MAJOR = 3

# --- LSTM -------------------------------------------------------------------------------------
# Keras orders gates i, f, c, o (keras/src/layers/rnn/lstm.py); torch orders i, f, g, o: the same
# blocks, so kernels only transpose. Keras adds one bias; torch has two, bias_hh is set to zero.
LSTM_GATES = 4
# recurrent_activation default: 'hard_sigmoid' up to Keras 2.2.x, 'sigmoid' from 2.3 on.
LSTM_RECURRENT_ACTIVATION_DEFAULT_KERAS_LT_2_3 = "hard_sigmoid"
LSTM_RECURRENT_ACTIVATION_DEFAULT = "sigmoid"

# --- masking ----------------------------------------------------------------------------------
# Embedding(mask_zero=True): id 0 is masked (keras/src/layers/core/embedding.py compute_mask).
MASK_VALUE = 0

# --- DeepMoji attention (deepmoji/attlayer.py, Felbo et al. 2017) ------------------------------
# att = a / (sum_t a + K.epsilon()); Keras' default fuzz factor epsilon() is 1e-7.
KERAS_EPSILON = 1e-7
ATTENTION_EPSILON = KERAS_EPSILON
# W is built with initializers.get('uniform') = Keras RandomUniform(-0.05, 0.05).
ATTENTION_UNIFORM_LIMIT = 0.05
# deepmoji/model_def.py: nb_classes > 2 ends in Dense(nb_classes, softmax); otherwise (binary)
# Dense(1, sigmoid). This is the largest class count that gets the single sigmoid unit.
DEEPMOJI_MAX_SIGMOID_CLASSES = 2

# --- initializers (keras/src/initializers) ----------------------------------------------------
EMBEDDING_UNIFORM_LIMIT = 0.05  # Embedding: RandomUniform(-0.05, 0.05)

# --- file formats -----------------------------------------------------------------------------
KERAS_V3_CONFIG = "config.json"
KERAS_V3_METADATA = "metadata.json"
KERAS_V3_WEIGHTS = "model.weights.h5"
