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


def keras_true_divide(a, b):
    """``/`` as a TF tensor computes it: integer tensors divide as float64 (int32, int64) or
    float32 (8- and 16-bit ints), TF's truediv; two Python numbers divide as Python does."""
    tensors = [v for v in (a, b) if torch.is_tensor(v)]
    if tensors and all(keras_integral(v) and not isinstance(v, bool) for v in (a, b)):
        small = (torch.int8, torch.uint8, torch.int16)
        wide = all(t.dtype not in small for t in tensors)
        dtype = torch.float64 if wide else torch.float32
        a = a.to(dtype) if torch.is_tensor(a) else float(a)
        b = b.to(dtype) if torch.is_tensor(b) else float(b)
    return a / b


def keras_operand(value, other):
    """A tuple or list of numbers beside a tensor in arithmetic or a comparison, as TF
    converts it: a tensor of the tensor's dtype (TF refuses floats for an integer tensor)."""
    if not (torch.is_tensor(other) and isinstance(value, list | tuple)):
        return value
    out = torch.tensor(value)
    if out.is_floating_point() and not (other.is_floating_point() or other.is_complex()):
        raise TypeError(f"{value!r} beside a {other.dtype} tensor (TensorFlow refuses it too)")
    return out.to(other.dtype)


def keras_reduce_mean(x, axis=None, keepdims=False):
    """tf.reduce_mean: an integer tensor's mean is the sum in x's dtype divided by the count
    with C's integer division (truncated toward zero)."""
    axes = keras_axes(x, axis)
    if not axes:
        return x
    if x.is_floating_point() or x.is_complex():
        return torch.mean(x, dim=axes, keepdim=keepdims)
    count = 1
    for dim in axes:
        count *= x.shape[dim]
    total = torch.sum(x, dim=axes, keepdim=keepdims, dtype=x.dtype)
    return torch.div(total, max(count, 1), rounding_mode="trunc").to(x.dtype)


def K_mean(x, axis=None, keepdims=False):
    """K.mean: tf.reduce_mean, booleans cast to float first (Keras' floatx)."""
    return keras_reduce_mean(x.float() if x.dtype == torch.bool else x, axis, keepdims)


def ops_mean(x, axis=None, keepdims=False):
    """keras.ops.mean: integers and booleans are averaged as float32 (Keras 3's result type)."""
    if not (x.is_floating_point() or x.is_complex()):
        x = x.to(torch.float32)
    axes = keras_axes(x, axis)
    return torch.mean(x, dim=axes, keepdim=keepdims) if axes else x


def keras_sum(x, axis=None, keepdims=False):
    """tf.reduce_sum: an integer sum keeps the integer dtype (torch's would be int64)."""
    axes = keras_axes(x, axis)
    if not axes:
        return x
    integral = not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
    return torch.sum(x, dim=axes, keepdim=keepdims, dtype=x.dtype if integral else None)


def keras_max(x, axis=None, keepdims=False):
    """tf.reduce_max: ties share the gradient evenly, as torch.amax does."""
    axes = keras_axes(x, axis)
    return torch.amax(x, dim=axes, keepdim=keepdims) if axes else x


def keras_min(x, axis=None, keepdims=False):
    axes = keras_axes(x, axis)
    return torch.amin(x, dim=axes, keepdim=keepdims) if axes else x


def tf_reduce_mean(input_tensor, axis=None, keepdims=False):
    return keras_reduce_mean(input_tensor, axis, keepdims)


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
    """K.clip: when both bounds are numbers, a max below the min is raised to the min; None
    bounds are infinite; then tf.clip_by_value."""
    numbers = (int, float)
    if isinstance(min_value, numbers) and isinstance(max_value, numbers):
        if max_value < min_value:
            max_value = min_value
    if min_value is None:
        min_value = -float("inf")
    if max_value is None:
        max_value = float("inf")
    # tf.clip_by_value: min(x, max) first, then max(., min): a min above the max wins
    return torch.clamp(torch.clamp(x, max=max_value), min=min_value)


def tf_clip_by_value(t, clip_value_min, clip_value_max):
    """tf.clip_by_value: min(t, max) first, then max(., min), so a min above the max wins
    (torch.clamp lets the max win)."""
    return torch.clamp(torch.clamp(t, max=clip_value_max), min=clip_value_min)


def ops_clip(x, x_min, x_max):
    """keras.ops.clip (TF backend): booleans as int32, then tf.clip_by_value."""
    if x.dtype == torch.bool:
        x = x.to(torch.int32)
    return torch.clamp(torch.clamp(x, max=x_max), min=x_min)


def K_softmax(x, axis=-1):
    """K.softmax: an int axis is tf.nn.softmax; None (every axis) or a list of axes is
    exp(x - max) / sum over those axes."""
    if isinstance(axis, int):
        return torch.softmax(x, dim=axis)
    axes = keras_axes(x, axis)
    e = torch.exp(x - torch.amax(x, dim=axes, keepdim=True))
    return e / torch.sum(e, dim=axes, keepdim=True)


def ops_softmax(x, axis=-1):
    """keras.ops.softmax: axis None is every axis at once (the tensor flattened)."""
    if axis is None:
        return torch.reshape(torch.softmax(torch.reshape(x, (-1,)), dim=0), x.shape)
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


def tf_matrix_transpose(a):
    """tf.linalg.matrix_transpose (tf.linalg.transpose, TF 1's spelling): the last two axes
    swapped, not every axis reversed."""
    if a.dim() < 2:
        raise ValueError(f"a matrix transpose of a rank-{a.dim()} tensor")
    return torch.transpose(a, -1, -2)


def K_transpose(x):
    return x.permute(*range(x.dim() - 1, -1, -1))


def keras_matmul(x1, x2):
    return torch.matmul(x1, x2)


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


def K_floatx():
    """keras.backend.floatx()'s default, "float32" (a file does not record a changed one)."""
    return "float32"


def K_epsilon():
    """keras.backend.epsilon()'s default, 1e-7 (a file does not record a changed one)."""
    return 1e-07


def K_int_shape(x):
    return tuple(x.shape)


def K_batch_flatten(x):
    return torch.reshape(x, (x.shape[0], -1))


def K_dot(x, y):
    """K.dot (numpy.dot's rule): matrices go through tf.matmul; with a side above rank 2, a sum
    product over x's last axis and y's second-to-last, shaped x[:-1] + y[:-2] + y[-1:]."""
    if x.dim() > 2 or y.dim() > 2:
        if x.dim() < 1 or y.dim() < 2:
            raise ValueError(f"K.dot of shapes {tuple(x.shape)} and {tuple(y.shape)}")
        # y's contracted axis to the front, the rest flattened in order: one matmul
        flat_x = torch.reshape(x, (-1, x.shape[-1]))
        flat_y = torch.reshape(torch.movedim(y, -2, 0), (y.shape[-2], -1))
        shape = (*x.shape[:-1], *y.shape[:-2], y.shape[-1])
        return torch.reshape(torch.matmul(flat_x, flat_y), shape)
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(f"K.dot of shapes {tuple(x.shape)} and {tuple(y.shape)} (tf.matmul)")
    return torch.matmul(x, y)


def K_batch_dot(x, y, axes=None):
    """K.batch_dot: per sample, x's axis axes[0] contracted with y's axis axes[1]; the output
    is (batch, x's other axes, y's other axes). axes None = (x's last, y's second-to-last, or
    its last when y is rank 2); an int means the same axis on both. A rank-2 side gets a unit
    axis for the product that is dropped again: (b, n) . (b, n) gives (b, 1)."""
    x_rank, y_rank = x.dim(), y.dim()
    if x_rank < 2 or y_rank < 2:
        raise ValueError(f"K.batch_dot of shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if isinstance(axes, int):
        axes = (axes, axes)
    if axes is None:
        axes = (x_rank - 1, y_rank - 1 if y_rank == 2 else y_rank - 2)
    if len(axes) != 2 or not all(isinstance(a, int) for a in axes):
        raise ValueError(f"K.batch_dot axes {axes!r}: two ints")
    x_axis = axes[0] + x_rank if axes[0] < 0 else axes[0]
    y_axis = axes[1] + y_rank if axes[1] < 0 else axes[1]
    if x_axis == 0 or y_axis == 0:
        raise ValueError("K.batch_dot over the batch axis")
    if x.shape[x_axis] != y.shape[y_axis]:
        raise ValueError(
            f"K.batch_dot of shapes {tuple(x.shape)} and {tuple(y.shape)} over axes {axes}"
        )
    if x_rank == 2:
        x, x_axis = torch.unsqueeze(x, 1), x_axis + 1
    if y_rank == 2:
        y = torch.unsqueeze(y, 2)
    # x's contracted axis last, y's second (the other axes keep their order): one batched matmul
    x = torch.movedim(x, x_axis, -1)
    y = torch.movedim(y, y_axis, 1)
    x_middle, y_trailing = x.shape[1:-1], y.shape[2:]
    flat_x = torch.reshape(x, (x.shape[0], -1, x.shape[-1]))
    flat_y = torch.reshape(y, (y.shape[0], y.shape[1], -1))
    out = torch.reshape(torch.matmul(flat_x, flat_y), (-1, *x_middle, *y_trailing))
    if x_rank == 2:
        return torch.squeeze(out, 1)
    if y_rank == 2:
        return torch.squeeze(out, -1)
    return out


def tf_matmul(a, b, transpose_a=False, transpose_b=False):
    """tf.matmul / tf.linalg.matmul: the last two axes, optionally transposed first."""
    if transpose_a:
        a = torch.transpose(a, -1, -2)
    if transpose_b:
        b = torch.transpose(b, -1, -2)
    return torch.matmul(a, b)


def ops_dot(x1, x2):
    """keras.ops.dot (numpy.dot): scalars multiply; a vector x2 is contracted with x1's last
    axis; otherwise x1's last axis with x2's second-to-last (tf.tensordot)."""
    if x1.dim() == 0 or x2.dim() == 0:
        return x1 * x2
    if x2.dim() == 1:
        return torch.tensordot(x1, x2, dims=([-1], [-1]))
    return torch.tensordot(x1, x2, dims=([-1], [-2]))


def keras_shape(x):
    """K.shape / tf.shape: the run-time shape as an int32 tensor (TF's default out_type)."""
    return torch.tensor(tuple(x.shape), dtype=torch.int32)


def K_constant(value, dtype=None, shape=None, name=None):
    """K.constant: float32 (Keras' floatx) unless dtype says; a scalar with a shape fills it,
    a list with a shape is reshaped (tf.constant). The tensor is made on the CPU."""
    out = torch.tensor(value, dtype=keras_dtype("float32" if dtype is None else dtype))
    if shape is None:
        return out
    return out.expand(tuple(shape)).clone() if out.dim() == 0 else torch.reshape(out, tuple(shape))


def keras_ones_like(x, dtype=None, name=None):
    """K.ones_like / tf.ones_like: x's dtype unless dtype says."""
    return torch.ones_like(x, dtype=None if dtype is None else keras_dtype(dtype))


def keras_zeros_like(x, dtype=None, name=None):
    return torch.zeros_like(x, dtype=None if dtype is None else keras_dtype(dtype))


def tf_ones_like(input, dtype=None, name=None):
    return torch.ones_like(input, dtype=None if dtype is None else keras_dtype(dtype))


def tf_zeros_like(input, dtype=None, name=None):
    return torch.zeros_like(input, dtype=None if dtype is None else keras_dtype(dtype))


def K_repeat_elements(x, rep, axis):
    """K.repeat_elements: each slice along axis repeated rep times in place (tf.repeat)."""
    return torch.repeat_interleave(x, rep, dim=axis)


def K_tile(x, n):
    """K.tile / tf.tile: one multiple per axis (an int is one axis); TF refuses other counts."""
    multiples = (n,) if isinstance(n, int) else tuple(n)
    if len(multiples) != x.dim():
        raise ValueError(f"tile multiples {multiples} for a rank-{x.dim()} tensor")
    return x.repeat(*multiples)


def tf_tile(input, multiples):
    multiples = tuple(multiples)
    if len(multiples) != input.dim():
        raise ValueError(f"tf.tile multiples {multiples} for a rank-{input.dim()} tensor")
    return input.repeat(*multiples)


def ops_tile(x, repeats):
    """keras.ops.tile (numpy.tile): repeats padded with leading ones, or x with leading axes."""
    return torch.tile(x, (repeats,) if isinstance(repeats, int) else tuple(repeats))


def K_argmax(x, axis=-1):
    """K.argmax: int64 indices of the first maximum along axis (tf.argmax)."""
    return torch.argmax(x, dim=axis)


def K_argmin(x, axis=-1):
    return torch.argmin(x, dim=axis)


def tf_argmax(input, axis=None, output_type="int64"):
    """tf.argmax: axis None is axis 0."""
    return torch.argmax(input, dim=0 if axis is None else axis).to(keras_dtype(output_type))


def tf_argmin(input, axis=None, output_type="int64"):
    return torch.argmin(input, dim=0 if axis is None else axis).to(keras_dtype(output_type))


def keras_getitem(value, index):
    """value[index] with Python/TF semantics, negative slice steps included (torch's slicing
    takes none): such a slice first keeps its whole axis, which is then narrowed to the run
    the slice selects, flipped, and stepped forward by the step's size."""
    items = index if isinstance(index, tuple) else (index,)
    reversed_slices = [
        i for i in items if isinstance(i, slice) and i.step is not None and i.step < 0
    ]
    if not torch.is_tensor(value) or not reversed_slices:
        return value[index]
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    plain, flips, axis = [], [], 0
    for item in items:
        if item is Ellipsis:
            axis += value.dim() - consumed
            plain.append(item)
        elif item is None or isinstance(item, slice):
            step = item.step if isinstance(item, slice) else None
            negative = step is not None and step < 0
            if negative:
                flips.append((axis, item))
            plain.append(slice(None) if negative else item)
            axis += 1
        elif isinstance(item, int) and not isinstance(item, bool):
            plain.append(item)
        else:
            raise ValueError(f"index {item!r} beside a negative slice step")
    out = value[tuple(plain)]
    for axis, item in flips:
        start, stop, step = item.indices(out.shape[axis])
        count = len(range(start, stop, step))
        if count == 0:
            out = torch.narrow(out, axis, 0, 0)
            continue
        last = start + (count - 1) * step
        # the run from `last` up to `start`, reversed: it now begins at `start`
        out = torch.flip(torch.narrow(out, axis, last, start - last + 1), (axis,))
        out = out[(slice(None),) * axis + (slice(None, None, -step),)]
    return out
