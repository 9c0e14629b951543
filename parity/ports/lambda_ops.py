"""The Keras backend functions a translated Lambda may call, in plain torch, with Keras' own
signatures and meaning (axis conventions, keepdims defaults, epsilons).

One function per (namespace, name): ``K_*`` = ``keras.backend`` as tf.keras/Keras 2 define it,
``tf_*`` = TensorFlow (tf, tf.math, tf.nn, tf.linalg), ``ops_*`` = Keras 3's ``keras.ops``.
parity.ports.lambda_layer calls them, and ``parity port`` copies their source into the
generated keras_layers.py (so each uses only torch, ``keras_axes`` and the constants written
inside it). The formulas are Keras' and TensorFlow's; the code is this project's.
"""

from __future__ import annotations

import torch


def keras_axes(x, axis):
    """Keras' reduction axes: None = every axis, an int or a list/tuple of ints."""
    if axis is None:
        return tuple(range(x.dim()))
    if isinstance(axis, list | tuple):
        return tuple(axis)
    return (axis,)


def keras_dtype(dtype):
    """A Keras/TF dtype name as torch's dtype."""
    names = {
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
        "float32": torch.float32,
        "float64": torch.float64,
        "int8": torch.int8,
        "uint8": torch.uint8,
        "int16": torch.int16,
        "int32": torch.int32,
        "int64": torch.int64,
        "bool": torch.bool,
    }
    if dtype not in names:
        raise ValueError(f"dtype {dtype!r} is not one parity knows")
    return names[dtype]


def keras_integral(value):
    """Whether a value is an int or an integer tensor (Python 2 division floors those)."""
    if torch.is_tensor(value):
        return not (value.is_floating_point() or value.is_complex())
    return isinstance(value, int)


def classic_divide(a, b):
    """Python 2's ``/`` (BINARY_DIVIDE): two ints floor-divide, anything else divides."""
    if keras_integral(a) and keras_integral(b):
        return a // b
    return a / b


def keras_mean(x, axis=None, keepdims=False):
    """K.mean / ops.mean: tf.reduce_mean, booleans cast to float first (Keras' floatx)."""
    if x.dtype == torch.bool:
        x = x.float()
    axes = keras_axes(x, axis)
    return torch.mean(x, dim=axes, keepdim=keepdims) if axes else x


def keras_sum(x, axis=None, keepdims=False):
    axes = keras_axes(x, axis)
    return torch.sum(x, dim=axes, keepdim=keepdims) if axes else x


def keras_max(x, axis=None, keepdims=False):
    """tf.reduce_max: ties share the gradient evenly, as torch.amax does."""
    axes = keras_axes(x, axis)
    return torch.amax(x, dim=axes, keepdim=keepdims) if axes else x


def keras_min(x, axis=None, keepdims=False):
    axes = keras_axes(x, axis)
    return torch.amin(x, dim=axes, keepdim=keepdims) if axes else x


def tf_reduce_mean(input_tensor, axis=None, keepdims=False):
    axes = keras_axes(input_tensor, axis)
    return torch.mean(input_tensor, dim=axes, keepdim=keepdims) if axes else input_tensor


def tf_reduce_sum(input_tensor, axis=None, keepdims=False):
    return keras_sum(input_tensor, axis, keepdims)


def tf_reduce_max(input_tensor, axis=None, keepdims=False):
    return keras_max(input_tensor, axis, keepdims)


def tf_reduce_min(input_tensor, axis=None, keepdims=False):
    return keras_min(input_tensor, axis, keepdims)


def keras_square(x):
    return torch.square(x)


def K_sqrt(x):
    """K.sqrt clips at zero first (tf.maximum(x, 0)), so negatives give 0, not NaN."""
    return torch.sqrt(torch.clamp(x, min=0.0))


def keras_sqrt(x):
    """tf.sqrt / ops.sqrt: negatives give NaN."""
    return torch.sqrt(x)


def keras_exp(x):
    return torch.exp(x)


def keras_log(x):
    return torch.log(x)


def keras_abs(x):
    return torch.abs(x)


def K_clip(x, min_value, max_value):
    """K.clip: None bounds are infinite; max below min is raised to min."""
    if min_value is None:
        min_value = -float("inf")
    if max_value is None:
        max_value = float("inf")
    if max_value < min_value:
        max_value = min_value
    return torch.clamp(x, min=min_value, max=max_value)


def tf_clip_by_value(t, clip_value_min, clip_value_max):
    return torch.clamp(t, min=clip_value_min, max=clip_value_max)


def ops_clip(x, x_min, x_max):
    return torch.clamp(x, min=x_min, max=x_max)


def keras_softmax(x, axis=-1):
    return torch.softmax(x, dim=axis)


def tf_softmax(logits, axis=None):
    """tf.nn.softmax: axis None is the last axis."""
    return torch.softmax(logits, dim=-1 if axis is None else axis)


def keras_sigmoid(x):
    return torch.sigmoid(x)


def keras_tanh(x):
    return torch.tanh(x)


def keras_relu(x):
    return torch.relu(x)


def tf_relu(features):
    return torch.relu(features)


def K_expand_dims(x, axis=-1):
    return torch.unsqueeze(x, axis)


def tf_expand_dims(input, axis):
    return torch.unsqueeze(input, axis)


def ops_expand_dims(x, axis):
    return torch.unsqueeze(x, axis)


def K_squeeze(x, axis):
    return torch.squeeze(x, axis)


def tf_squeeze(input, axis=None):
    """tf.squeeze: axis None drops every size-1 axis."""
    return torch.squeeze(input) if axis is None else torch.squeeze(input, axis)


def ops_squeeze(x, axis=None):
    return torch.squeeze(x) if axis is None else torch.squeeze(x, axis)


def K_concatenate(tensors, axis=-1):
    return torch.cat(list(tensors), dim=axis)


def tf_concat(values, axis):
    return torch.cat(list(values), dim=axis)


def ops_concatenate(xs, axis=0):
    return torch.cat(list(xs), dim=axis)


def keras_stack(x, axis=0):
    return torch.stack(list(x), dim=axis)


def tf_stack(values, axis=0):
    return torch.stack(list(values), dim=axis)


def K_l2_normalize(x, axis=None):
    """tf.linalg.l2_normalize: x * rsqrt(max(sum(x^2), 1e-12)); axis None = every axis."""
    square_sum = torch.sum(torch.square(x), dim=keras_axes(x, axis), keepdim=True)
    return x * torch.rsqrt(torch.clamp(square_sum, min=1e-12))


def tf_l2_normalize(x, axis=None, epsilon=1e-12):
    square_sum = torch.sum(torch.square(x), dim=keras_axes(x, axis), keepdim=True)
    return x * torch.rsqrt(torch.clamp(square_sum, min=epsilon))


def K_reshape(x, shape):
    return torch.reshape(x, tuple(shape))


def tf_reshape(tensor, shape):
    return torch.reshape(tensor, tuple(shape))


def ops_reshape(x, newshape):
    return torch.reshape(x, tuple(newshape))


def K_permute_dimensions(x, pattern):
    return x.permute(*pattern)


def tf_transpose(a, perm=None):
    """tf.transpose: perm None reverses the axes."""
    return a.permute(*(range(a.dim() - 1, -1, -1) if perm is None else perm))


def ops_transpose(x, axes=None):
    return x.permute(*(range(x.dim() - 1, -1, -1) if axes is None else axes))


def K_transpose(x):
    return x.permute(*range(x.dim() - 1, -1, -1))


def keras_matmul(x1, x2):
    return torch.matmul(x1, x2)


def tf_matmul(a, b):
    return torch.matmul(a, b)


def keras_cast(x, dtype):
    """K.cast / tf.cast / ops.cast: tensors and Python numbers (a shape entry) alike."""
    return torch.as_tensor(x).to(keras_dtype(dtype))


def K_reverse(x, axes):
    return torch.flip(x, dims=keras_axes(x, axes))


def tf_reverse(tensor, axis):
    return torch.flip(tensor, dims=keras_axes(tensor, axis))


def ops_flip(x, axis=None):
    return torch.flip(x, dims=keras_axes(x, axis))


def keras_maximum(x, y):
    return torch.maximum(torch.as_tensor(x), torch.as_tensor(y))


def keras_minimum(x, y):
    return torch.minimum(torch.as_tensor(x), torch.as_tensor(y))


def K_pow(x, a):
    return torch.pow(x, a)


def tf_pow(x, y):
    return torch.pow(x, y)


def ops_power(x1, x2):
    return torch.pow(x1, x2)


def K_epsilon():
    """keras.backend.epsilon()'s default, 1e-7 (a file does not record a changed one)."""
    return 1e-07


def K_int_shape(x):
    return tuple(x.shape)


def K_batch_flatten(x):
    return torch.reshape(x, (x.shape[0], -1))
