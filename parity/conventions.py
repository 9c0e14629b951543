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
#: The CLI option that fixes the choice (named in diagnoses that find the other one fits).
HARD_SIGMOID_OPTION = "--hard-sigmoid"
#: Keras versions below this major use the 0.2-slope hard sigmoid.
HARD_SIGMOID_KERAS3_FROM_MAJOR = 3
#: The config name whose function depends on the Keras that runs it (either variant above).
HARD_SIGMOID_CONFIG_NAME = "hard_sigmoid"

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
#: The folder of a .keras archive holding layers' asset files (vocabulary.txt per lookup layer).
KERAS_V3_ASSETS = "assets/"

# --- optimizers and initializers ---
# Initializers (keras/src/initializers/random_initializers.py). VarianceScaling divides a
# truncated normal's stddev by the stddev of a unit normal cut at +-2, and cuts at 2 stddevs.
TRUNCATED_NORMAL_STDDEV_CORRECTION = 0.87962566103423978
TRUNCATED_NORMAL_CUTOFF = 2.0
# Orthogonal(gain=1.0): the recurrent_initializer default of SimpleRNN, GRU and LSTM.
ORTHOGONAL_GAIN = 1.0
# LSTM(unit_forget_bias=True): the forget block of the bias starts at 1, the rest at 0.
LSTM_FORGET_BIAS = 1.0
# LSTM gate blocks in Keras' and torch's order (i, f, c|g, o): the forget gate is block 1.
LSTM_FORGET_GATE_INDEX = 1
# Optimizer defaults (keras/src/optimizers/{adam,adamw,rmsprop,sgd,adagrad}.py, Keras 3.15).
OPTIMIZER_EPSILON = KERAS_EPSILON  # epsilon=1e-7 in Adam, AdamW, RMSprop, Adagrad
ADAM_LEARNING_RATE = 1e-3
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAMW_WEIGHT_DECAY = 0.004
RMSPROP_LEARNING_RATE = 1e-3
RMSPROP_RHO = 0.9
SGD_LEARNING_RATE = 0.01
ADAGRAD_LEARNING_RATE = 1e-3
ADAGRAD_INITIAL_ACCUMULATOR_VALUE = 0.1
# Keras stores learning_rate as a floatx (float32) variable and casts Python hyper-parameters
# with tf.cast (via a float32 tensor), so a float64 model still sees float32-rounded lr, betas,
# momentum and weight decay (keras/src/optimizers/base_optimizer.py, adam.py update_step).
OPTIMIZER_HYPERPARAMETER_DTYPE = "float32"
# Losses on probabilities clip to [epsilon, 1 - epsilon] (backend.epsilon(), 1e-7); a sigmoid or
# softmax output carries its logits (_keras_logits) and Keras then uses the logits instead.
LOSS_EPSILON = KERAS_EPSILON
# keras.regularizers.L2(l2=0.01): loss term l2 * sum(w ** 2), added to the loss, not decay.
L2_DEFAULT = 0.01
# DeepMoji fine-tuning (deepmoji/finetuning.py): Adam(clipnorm=1); lr 1e-3 for "last" and "new",
# 1e-4 for "full"; chain-thaw trains the new head at 1e-3, then every other stage at 1e-4.
DEEPMOJI_CLIPNORM = 1.0
DEEPMOJI_LR_HEAD = 1e-3
DEEPMOJI_LR_BODY = 1e-4
# deepmoji/model_def.py deepmoji_transfer: embed dropout 0.25, final dropout 0.5 for fine-tuning.
DEEPMOJI_FINETUNE_EMBED_DROPOUT = 0.25
DEEPMOJI_FINETUNE_FINAL_DROPOUT = 0.5

# --- generic conversion ---
# keras/src/layers/rnn/gru.py: kernel (in, 3u) gates z, r, h; torch's nn.GRU orders r, z, n.
GRU_GATES = 3
# keras/src/activations/activations.py leaky_relu(x, negative_slope=0.2) (tf.nn's alpha is 0.2).
KERAS3_LEAKY_RELU_SLOPE = 0.2
# keras/src/layers/normalization/batch_normalization.py: momentum=0.99, epsilon=1e-3; the moving
# variance is updated with the biased batch variance (tf_keras: same).
BATCH_NORM_MOMENTUM = 0.99
BATCH_NORM_EPSILON = 1e-3
# keras/src/layers/normalization/layer_normalization.py: epsilon=1e-3 (torch: 1e-5).
LAYER_NORM_EPSILON = 1e-3
#: UnitNormalization's epsilon (keras/src/layers/normalization/unit_normalization.py, and
#: tf.math.l2_normalize's default): Keras 3 floors the inverse norm at 1/eps, tf.keras the squared
#: norm at eps.
UNIT_NORMALIZATION_EPSILON = 1e-12
# Keras 1 LSTM (keras 1.2 recurrent.py, consume_less != "gpu") saved 12 arrays per layer in the
# order W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, b_f, W_o, U_o, b_o; Keras 2+ fuses them i, f, c, o.
KERAS1_LSTM_GATE_ORDER = ("i", "c", "f", "o")
KERAS_LSTM_GATE_ORDER = ("i", "f", "c", "o")
# Keras 1 GRU saved W_z, U_z, b_z, W_r, U_r, b_r, W_h, U_h, b_h; Keras 2+ fuses them z, r, h.
KERAS1_GRU_GATE_ORDER = ("z", "r", "h")
# A stored weight larger than this is refused before it is read (no Keras text model comes near:
# DeepMoji's largest array is 50000 x 256 floats = 51 MB).
MAX_WEIGHT_BYTES = 2**34

# --- hostile-file limits (parity/keras/limits.py enforces them) ---
# All weights of one file together, checked from declared shapes before any allocation (a small
# compressed dataset can declare terabytes); real DeepMoji is 90 MB.
MAX_FILE_WEIGHT_BYTES = 2**31
# config.json, metadata.json, the model_config / training_config attributes, a --config file:
# DeepMoji's config is a few KB; a config this large is not a model description.
MAX_JSON_BYTES = 16 * 2**20
# Keras configs nest a few levels per layer wrapper (Bidirectional > LSTM > initializer ...).
MAX_JSON_DEPTH = 64
# A zip member (model.weights.h5 when compressed) is read at most this far, whatever its header
# says; the same budget as the weights it holds plus headroom for HDF5 metadata.
MAX_ZIP_MEMBER_BYTES = MAX_FILE_WEIGHT_BYTES + 64 * 2**20
# Trained float weights barely compress (~1.1x); a compressed dataset or zip member that expands
# more than this, past a size where it matters, is a decompression bomb, not a model.
MAX_COMPRESSION_RATIO = 100
# A .keras archive's assets/ (the lookup layers' vocabulary.txt files): DeepMoji's 50,000-word
# vocabulary is ~0.5 MB; a vocabulary file this large, or this many asset files, is not a model's.
MAX_ASSET_BYTES = 64 * 2**20
MAX_ASSET_FILES = 1024
# Tokens in one lookup layer's vocabulary (Keras' own text models use ~10^4-10^5).
MAX_VOCABULARY_TOKENS = 5_000_000
COMPRESSION_CHECK_FROM_BYTES = 16 * 2**20
# layer_names / weight_names attribute lengths: a model with more layers is not a Keras text model.
MAX_NAME_LIST_LENGTH = 100_000
# Group nesting in a Keras 3 weight file: layers/<name>/<sub>/.../vars/<i> is a handful of levels.
MAX_GROUP_DEPTH = 32
# Objects (groups + datasets) visited in one HDF5 file.
MAX_HDF5_OBJECTS = 1_000_000
#: Members of one group inside a Keras 3 layer's weights (its vars, or a sub-object such as a
#: Bidirectional's forward_layer): a layer holds a handful, MultiHeadAttention a few dozen.
MAX_LAYER_GROUP_MEMBERS = 10_000

# --- parity check ---
# torch.nn.BatchNorm1d's default eps (torch/nn/modules/batchnorm.py); a port that keeps it
# instead of Keras' BATCH_NORM_EPSILON is one of the causes `parity check` diagnoses.
TORCH_BATCH_NORM_EPSILON = 1e-5

# --- model graphs read from untrusted configs ---
# A model config may list at most this many layers, and its layers at most this many calls in
# all; no real Keras model comes near (DeepMoji has 9 layers, a ResNet-152 about 500).
MAX_GRAPH_LAYERS = 100_000
#: A sequence length a config may fix (an Input's shape): checks and fine-tuning allocate ids of
#: that length, so an absurd one is refused; DeepMoji's is 30 to 50, long documents thousands.
MAX_INPUT_LENGTH = 1 << 20
#: Classes a fine-tuning data file may have: the head gets one unit per class (DeepMoji's own
#: has 64), and multi-label data trains one model per class (DeepMoji's benchmarks: at most 7).
MAX_FINETUNE_CLASSES = 10_000
MAX_MULTILABEL_CLASSES = 256
MAX_GRAPH_CALLS = 100_000
# The longest chain of layer calls from an input to an output; the graph is walked without
# recursion, so this only keeps a crafted config from building an absurd model.
MAX_GRAPH_DEPTH = 100_000

#: A file's structure is walked in a forked child first (parity.keras.isolate): the HDF5 C library
#: loops forever or crashes on some malformed files. The child's deadline, and the memory it may
#: take beyond the parent's current size (the walk reads no weight data, so little is needed).
ISOLATED_READ_SECONDS = 10
ISOLATED_READ_EXTRA_BYTES = 2 * 2**30

# --- image and sequence layouts (parity.arch.generic: conv, vision, preprocessing) ---
#: data_format values meaning channels-last (None: the config omits it, Keras' default).
CHANNELS_LAST = ("channels_last", None)
#: Keras 1's dim_ordering values meaning channels-last ('th' is Theano's, kernels flipped).
KERAS1_CHANNELS_LAST = ("tf", None)

# --- merge, structure and activation layers (parity.arch.generic merge/structure/activations) ---
#: Config key the generic converter stores the writing Keras major version under: merge masks
#: differ (Keras 2 ANDs the masks present; Keras 3 ORs them, None if any input has none).
KERAS_MAJOR_KEY = "_keras_major"
#: Keras 3 Dot(normalize=True): x * min(rsqrt(sum x^2), 1 / epsilon) = x * rsqrt(max(sum, eps^2)).
DOT_NORMALIZE_FLOOR_KERAS3 = KERAS_EPSILON**2
#: Keras 2 Dot(normalize=True): tf.linalg.l2_normalize's default epsilon on the squared sum.
DOT_NORMALIZE_FLOOR_KERAS2 = 1e-12
#: keras.layers.LeakyReLU's default slope (Keras 2 and 3); the "leaky_relu" activation's is 0.2.
KERAS_LEAKY_RELU_LAYER_SLOPE = 0.3

# --- attention layers (parity.ports.attention) ---
#: keras.layers.Attention / AdditiveAttention (Keras 2 and 3, _apply_scores): a score at a
#: masked value step has this subtracted before the softmax (65504 for float16, not supported).
ATTENTION_MASK_PENALTY = 1.0e9
#: keras.layers.Softmax given a mask (Keras 3 _large_negative_number, tf-keras
#: _large_compatible_negative): masked logits become, or have added, -1e9. MultiHeadAttention
#: masks its scores through it in tf-keras, and in Keras 3 when dropout > 0.
SOFTMAX_MASK_FILL = -1.0e9
#: Keras 3's TensorFlow backend dot_product_attention (_get_large_negative): masked logits are
#: set to 0.7 * -3.38953e38. Keras 3 MultiHeadAttention uses it when dropout == 0.
DOT_PRODUCT_ATTENTION_MASK_FILL = 3.38953e38 * -0.7

# --- TensorFlow checkpoints and SavedModels (parity.keras.tensor_bundle, tf_checkpoint) ---
#: A checkpoint's .index (one entry per tensor, ~100 bytes each) and a SavedModel's
#: keras_metadata.pb (one JSON config per layer): larger ones are not a Keras text model's.
MAX_TF_INDEX_BYTES = 64 * 2**20
#: Data shards a bundle header may declare (TF writes one per device or sharding policy slot).
MAX_TF_SHARDS = 10_000
#: TensorFlow's own rank limit is 254; no Keras weight has more than a handful of dimensions.
MAX_TF_RANK = 32
#: A string tensor (the object graph _CHECKPOINTABLE_OBJECT_GRAPH is the only one read).
MAX_TF_STRING_BYTES = 64 * 2**20
#: Nodes of a checkpoint's object graph (layers, variables, optimizer slots, SavedModel extras).
MAX_TF_OBJECTS = 1_000_000
#: Data blocks one index may name: TF's table writer only closes a block after adding an entry
#: to it, so a real table has at most one block per tensor (plus the header's).
MAX_TF_TABLE_BLOCKS = MAX_NAME_LIST_LENGTH + 1
#: Bytes checksummed, decompressed or assembled into keys while reading one index, all blocks
#: together: a real index is read about once (its blocks do not overlap, its entries are
#: ~100 bytes); this is twice the largest index read at all.
MAX_TF_TABLE_DECODED_BYTES = 2 * MAX_TF_INDEX_BYTES
#: One tensor name in an index: tf-keras keys are object paths of ~100 bytes.
MAX_TF_KEY_BYTES = 64 * 2**10
#: Fields of one small protobuf message (a bundle header, a tensor entry, a shape, an object
#: reference, a SavedObject): real ones have a handful, a shape one per dimension.
MAX_TF_MESSAGE_FIELDS = 4096
#: Protobuf fields decoded from one index (header, entries and their shapes together): a real
#: entry has ~12 (a ResNet-152's ~1,000 tensors: ~12k), so this is 20 per tensor even at
#: MAX_NAME_LIST_LENGTH tensors.
MAX_TF_INDEX_FIELDS = 2**21
#: Fields of one object-graph node (its children, attributes, slot variables): a model's root
#: names each layer twice (layer-N, layer_with_weights-N); ResNet-152 has ~500 layers.
MAX_TF_OBJECT_FIELDS = 2**20
#: Protobuf fields decoded from one object graph or keras_metadata.pb, all messages together,
#: and the steps of all walks over the graph together: a real object is tracked from a few
#: parents (a ResNet-152 with Adam slots: a few thousand objects, tens of thousands of fields).
MAX_TF_GRAPH_FIELDS = 2**22
#: Weights one checkpoint may yield (aliases counted): more than a Keras model has names for.
MAX_TF_WEIGHTS = MAX_NAME_LIST_LENGTH
#: A safetensors file written by parity.save: its JSON header (one ~100-byte entry per tensor
#: plus the model config, itself at most MAX_JSON_BYTES), its tensor count (torch may split one
#: Keras weight in two: an LSTM's bias_ih and bias_hh) and its data (the Keras weights, maybe
#: widened to float64 on conversion).
MAX_SAFETENSORS_HEADER_BYTES = 2 * MAX_JSON_BYTES
MAX_SAFETENSORS_TENSORS = 2 * MAX_NAME_LIST_LENGTH
MAX_SAFETENSORS_BYTES = 2 * MAX_FILE_WEIGHT_BYTES
#: No torch parameter or buffer of a converted model has more dimensions than a Keras weight.
MAX_SAFETENSORS_RANK = MAX_TF_RANK

# --- layers saved with trainable=False, during fit (parity.arch.generic.model) ---
#: Config key of a layer's trainable flag (every Keras version writes it; a nested model's
#: False holds for its layers too: Keras' setter recurses into them).
TRAINABLE_KEY = "trainable"
#: A frozen BatchNormalization runs in inference mode during fit: moving statistics, none
#: updated. Keras 3 (BatchNormalization.call takes batch statistics only when
#: ``training and self.trainable``) and tf.keras in TF 2 (its docstring: "setting
#: layer.trainable = False ... the layer will run in inference mode", TF 2.0 onwards).
FROZEN_BATCH_NORM_INFERENCE = "inference"
#: Standalone Keras 1.x-2.3.1: a frozen BatchNormalization still normalises with the batch
#: statistics in fit, and does not update its moving statistics (Layer.updates is empty for a
#: non-trainable layer; call() itself never looks at ``trainable``).
FROZEN_BATCH_NORM_BATCH = "batch"
#: tf.keras marks its version with "-tf" (2.2.4-tf, 2.3.0-tf); from 2.4 on every Keras 2 is
#: tf.keras (standalone Keras ended at 2.3.1).
TF_KERAS_VERSION_SUFFIX = "-tf"
FIRST_TF_ONLY_KERAS = (2, 4)


def frozen_batch_norm_rule(keras_version: str | None) -> str:
    """How a BatchNormalization saved with trainable=False trains, for the Keras that wrote
    the file (None, unknown: today's rule)."""
    if not keras_version:
        return FROZEN_BATCH_NORM_INFERENCE
    if keras_version.endswith(TF_KERAS_VERSION_SUFFIX):
        return FROZEN_BATCH_NORM_INFERENCE
    parts = []
    for part in keras_version.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        return FROZEN_BATCH_NORM_INFERENCE
    if tuple(parts) < FIRST_TF_ONLY_KERAS:
        return FROZEN_BATCH_NORM_BATCH
    return FROZEN_BATCH_NORM_INFERENCE
