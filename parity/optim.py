"""Optimizers that update weights exactly as Keras 3 does, with Keras' argument names.

Why not torch.optim: the same names mean different updates. torch's Adam adds eps to
sqrt(v_hat) after bias correction, Keras adds it to sqrt(v) before (Kingma & Ba's "epsilon
hat"), which matters when gradients are small; torch's RMSprop puts eps outside the square root,
Keras inside; torch's SGD lr has no default, Keras' is 0.01; Keras' defaults differ (epsilon
1e-7). Keras also rounds its hyper-parameters to float32 (the learning rate is a float32
variable, betas and momentum go through tf.cast) even for float64 weights, and counts one
iteration per optimizer, not per parameter.

Each class is a ``torch.optim.Optimizer`` (state_dict, param groups, LR schedulers work; the
learning rate lives in ``group["lr"]`` so torch schedulers find it). Every step follows Keras'
``apply``: gradient clipping (clipnorm / global_clipnorm / clipvalue), then decoupled weight decay
``w -= w * weight_decay * lr`` (every optimizer accepts ``weight_decay``; AdamW defaults it to
0.004), then the update rule, then ``iterations += 1``. Parameters without a gradient are skipped,
as Keras skips variables with no gradient.

Embeddings: TensorFlow hands Keras an embedding's gradient as IndexedSlices, one row per token
*occurrence*, unsummed. Keras' clipnorm / global_clipnorm then measure the norm over occurrences,
and Adam, RMSprop and Adagrad square each occurrence before summing (sum of g_k^2, not
(sum g_k)^2): a token seen n times with equal gradients moves up to sqrt(n) times further than
the learning rate on Adam's first step. ``track_embeddings(model)``
records those occurrences for every nn.Embedding so these optimizers do the same; without it an
embedding is treated as a dense variable, which is what tf.keras (Keras 2) does (measured: a
tf_keras Adam run resumes here to 1e-8 dense, 8e-3 off with occurrences) and what Keras 3 does
on the JAX and torch backends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from parity.conventions import (
    ADAGRAD_INITIAL_ACCUMULATOR_VALUE,
    ADAGRAD_LEARNING_RATE,
    ADAM_BETA_1,
    ADAM_BETA_2,
    ADAM_LEARNING_RATE,
    ADAMW_WEIGHT_DECAY,
    OPTIMIZER_EPSILON,
    OPTIMIZER_HYPERPARAMETER_DTYPE,
    RMSPROP_LEARNING_RATE,
    RMSPROP_RHO,
    SGD_LEARNING_RATE,
)

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "KerasOptimizer",
    "RMSprop",
    "track_embeddings",
]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def _as_keras(value: float, like: Tensor) -> Tensor:
    """A hyper-parameter as Keras sees it: rounded to float32, then cast to the weight's dtype."""
    rounded = float(np.asarray(value, dtype=OPTIMIZER_HYPERPARAMETER_DTYPE))
    return torch.tensor(rounded, dtype=like.dtype, device=like.device)


#: Attribute on an embedding weight holding [(ids (N,), per-occurrence grads (N, D)), ...].
_SLICES = "_keras_parity_slices"


def _record_lookup(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    if not (torch.is_grad_enabled() and output.requires_grad):
        return
    weight = module.weight
    ids = inputs[0].reshape(-1)

    def keep(grad: Tensor) -> None:
        slices = getattr(weight, _SLICES, None)
        if slices is None:
            slices = []
            setattr(weight, _SLICES, slices)
        slices.append((ids, grad.reshape(ids.shape[0], -1)))

    output.register_hook(keep)


def track_embeddings(model: nn.Module) -> list[RemovableHandle]:
    """Record each nn.Embedding's per-occurrence gradients, as TensorFlow's IndexedSlices give
    Keras; returns the hook handles (``.remove()`` them to stop)."""
    return [
        m.register_forward_hook(_record_lookup)
        for m in model.modules()
        if isinstance(m, nn.Embedding)
    ]


class _Grad:
    """A gradient as Keras holds it: dense (summed), plus the unsummed occurrences if sparse."""

    def __init__(self, dense: Tensor, ids: Tensor | None = None, rows: Tensor | None = None):
        self.dense, self.ids, self.rows = dense, ids, rows

    @classmethod
    def of(cls, p: Tensor) -> _Grad:
        slices = getattr(p, _SLICES, None)
        if slices is None:
            return cls(p.grad.to(p.dtype))
        delattr(p, _SLICES)
        ids = torch.cat([i for i, _ in slices])
        rows = torch.cat([r for _, r in slices]).to(p.dtype)
        return cls(p.grad.to(p.dtype), ids, rows)

    def sum_of_squares(self) -> Tensor:
        return torch.sum(torch.square(self.rows if self.rows is not None else self.dense))

    def square(self) -> Tensor:
        """ops.square(gradient), densified: per-occurrence squares summed for sparse ones."""
        if self.rows is None:
            return torch.square(self.dense)
        out = torch.zeros_like(self.dense)
        return out.index_add_(0, self.ids, torch.square(self.rows).reshape(len(self.ids), -1))

    def map(self, fn: Callable[[Tensor], Tensor]) -> _Grad:
        """Apply an elementwise fn to the occurrences (sparse) or the dense gradient."""
        if self.rows is None:
            return _Grad(fn(self.dense))
        rows = fn(self.rows)
        dense = torch.zeros_like(self.dense).index_add_(
            0, self.ids, rows.reshape(len(self.ids), -1)
        )
        return _Grad(dense, self.ids, rows)


class KerasOptimizer(torch.optim.Optimizer):
    """Keras' ``apply``: clip, decay, update each parameter, then one iteration for all."""

    #: Per-parameter state names, in the order Keras creates its optimizer variables.
    slots: tuple[str, ...] = ()

    def __init__(
        self,
        params: Params,
        defaults: dict[str, Any],
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("pass at most one of clipnorm, clipvalue, global_clipnorm (Keras)")
        if defaults["lr"] < 0:
            raise ValueError(f"learning_rate must be >= 0, got {defaults['lr']}")
        defaults = {
            **defaults,
            "clipnorm": clipnorm,
            "clipvalue": clipvalue,
            "global_clipnorm": global_clipnorm,
            "iterations": 0,
        }
        super().__init__(params, defaults)

    @property
    def iterations(self) -> int:
        """Keras' ``optimizer.iterations``: steps taken (one counter for all parameters)."""
        return self.param_groups[0]["iterations"]

    @iterations.setter
    def iterations(self, value: int) -> None:
        for group in self.param_groups:
            group["iterations"] = int(value)

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        """Fresh per-parameter slots (Keras builds them as zeros unless stated)."""
        return {
            name: torch.zeros_like(p, memory_format=torch.preserve_format) for name in self.slots
        }

    def _state(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state[p]
        if not state:
            state.update(self.init_state(p))
        return state

    def update(self, p: Tensor, g: _Grad, lr: Tensor, t: Tensor, group: dict[str, Any]) -> None:
        """One Keras ``update_step`` for parameter ``p`` with gradient ``g``, in place."""
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                if hasattr(p, _SLICES):
                    delattr(p, _SLICES)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("Keras-semantics optimizers need dense gradients")
            grads = _clip([_Grad.of(p) for p in params], group)
            for p, g in zip(params, grads, strict=True):
                lr = _as_keras(group["lr"], p)
                if group["weight_decay"] is not None:
                    p.sub_(p * _as_keras(group["weight_decay"], p) * lr)
                t = torch.tensor(group["iterations"] + 1, dtype=p.dtype, device=p.device)
                self.update(p, g, lr, t, group)
            group["iterations"] += 1
        return loss


def _clip_by_norm(g: _Grad, clipnorm: float) -> _Grad:
    # Keras: g * c / max(||g||, c), applied whatever the norm (so it rounds like Keras); a
    # sparse gradient's norm runs over its occurrences, and it stays sparse.
    c = torch.tensor(clipnorm, dtype=g.dense.dtype, device=g.dense.device)
    norm = torch.sqrt(g.sum_of_squares())
    return g.map(lambda x: (x * c) / torch.maximum(norm, c))


def _clip(grads: list[_Grad], group: dict[str, Any]) -> list[_Grad]:
    """Keras ``_clip_gradients``: per-tensor norm, else global norm, else value."""
    if group["clipnorm"]:
        return [_clip_by_norm(g, group["clipnorm"]) for g in grads]
    if group["global_clipnorm"] and grads:
        c = group["global_clipnorm"]
        norm = torch.sqrt(torch.stack([g.sum_of_squares() for g in grads]).sum())
        scale = c * torch.minimum(1.0 / norm, torch.tensor(1.0 / c, dtype=norm.dtype))
        scale = scale + (norm - norm)  # NaN for a non-finite norm, as in Keras
        return [g.map(lambda x, s=scale: x * s.to(x.dtype)) for g in grads]
    if group["clipvalue"]:
        v = group["clipvalue"]
        return [g.map(lambda x: torch.clamp(x, -v, v)) for g in grads]
    return grads


class Adam(KerasOptimizer):
    """Keras Adam: m, v moving averages; w -= m * alpha / (sqrt(v) + epsilon),
    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t). epsilon is "epsilon hat": it sits before
    the bias correction, so torch's eps equals Keras' epsilon * sqrt(1 - beta_2^t)."""

    slots = ("momentum", "velocity")

    def __init__(
        self,
        params: Params,
        learning_rate: float = ADAM_LEARNING_RATE,
        beta_1: float = ADAM_BETA_1,
        beta_2: float = ADAM_BETA_2,
        epsilon: float = OPTIMIZER_EPSILON,
        amsgrad: bool = False,
        weight_decay: float | None = None,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        defaults = {
            "lr": learning_rate,
            "beta_1": beta_1,
            "beta_2": beta_2,
            "epsilon": epsilon,
            "amsgrad": amsgrad,
            "weight_decay": weight_decay,
        }
        super().__init__(
            params,
            defaults,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
        )

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        state = super().init_state(p)
        if self.defaults["amsgrad"]:
            state["velocity_hat"] = torch.zeros_like(p)
        return state

    def update(self, p: Tensor, g: _Grad, lr: Tensor, t: Tensor, group: dict[str, Any]) -> None:
        state = self._state(p)
        m, v = state["momentum"], state["velocity"]
        beta_1_power = torch.pow(_as_keras(group["beta_1"], p), t)
        beta_2_power = torch.pow(_as_keras(group["beta_2"], p), t)
        alpha = lr * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m.add_((g.dense - m) * (1 - group["beta_1"]))
        v.add_((g.square() - v) * (1 - group["beta_2"]))
        if group["amsgrad"]:
            v_hat = state.setdefault("velocity_hat", torch.zeros_like(p))
            torch.maximum(v_hat, v, out=v_hat)
            v = v_hat
        p.sub_((m * alpha) / (torch.sqrt(v) + group["epsilon"]))


class AdamW(Adam):
    """Keras AdamW: Adam plus decoupled weight decay (default 0.004), w -= w * wd * lr first."""

    def __init__(
        self,
        params: Params,
        learning_rate: float = ADAM_LEARNING_RATE,
        weight_decay: float = ADAMW_WEIGHT_DECAY,
        beta_1: float = ADAM_BETA_1,
        beta_2: float = ADAM_BETA_2,
        epsilon: float = OPTIMIZER_EPSILON,
        amsgrad: bool = False,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        if weight_decay is None:
            raise ValueError("AdamW needs a float weight_decay (Keras refuses None too)")
        super().__init__(
            params,
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
            amsgrad,
            weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
        )


class RMSprop(KerasOptimizer):
    """Keras RMSprop: v = rho v + (1 - rho) g^2; step lr * g / sqrt(v + epsilon) (epsilon inside
    the root); optional momentum (velocity of steps) and centered variant."""

    def __init__(
        self,
        params: Params,
        learning_rate: float = RMSPROP_LEARNING_RATE,
        rho: float = RMSPROP_RHO,
        momentum: float = 0.0,
        epsilon: float = OPTIMIZER_EPSILON,
        centered: bool = False,
        weight_decay: float | None = None,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        defaults = {
            "lr": learning_rate,
            "rho": rho,
            "momentum": momentum,
            "epsilon": epsilon,
            "centered": centered,
            "weight_decay": weight_decay,
        }
        super().__init__(
            params,
            defaults,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
        )

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        state = {"velocity": torch.zeros_like(p)}
        if self.defaults["momentum"] > 0:
            state["momentum"] = torch.zeros_like(p)
        if self.defaults["centered"]:
            state["average_gradient"] = torch.zeros_like(p)
        return state

    def update(self, p: Tensor, g: _Grad, lr: Tensor, t: Tensor, group: dict[str, Any]) -> None:
        state = self._state(p)
        rho = group["rho"]
        velocity = state["velocity"]
        velocity.copy_(rho * velocity + (1 - rho) * g.square())
        if group["centered"]:
            avg = state.setdefault("average_gradient", torch.zeros_like(p))
            avg.copy_(rho * avg + (1 - rho) * g.dense)
            denominator = velocity - torch.square(avg) + group["epsilon"]
        else:
            denominator = velocity + group["epsilon"]
        increment = (lr * g.dense) / torch.sqrt(denominator)
        if group["momentum"] > 0:
            mom = state.setdefault("momentum", torch.zeros_like(p))
            mom.copy_(group["momentum"] * mom + increment)
            p.sub_(mom)
        else:
            p.sub_(increment)


class SGD(KerasOptimizer):
    """Keras SGD: m = momentum * m - lr * g; w += m (nesterov: w += momentum * m - lr * g);
    plain w -= g * lr without momentum. lr defaults to 0.01."""

    def __init__(
        self,
        params: Params,
        learning_rate: float = SGD_LEARNING_RATE,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be a float in [0, 1] (Keras), got {momentum}")
        defaults = {
            "lr": learning_rate,
            "momentum": float(momentum),
            "nesterov": nesterov,
            "weight_decay": weight_decay,
        }
        super().__init__(
            params,
            defaults,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
        )

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {"momentum": torch.zeros_like(p)} if self.defaults["momentum"] != 0 else {}

    def update(self, p: Tensor, g: _Grad, lr: Tensor, t: Tensor, group: dict[str, Any]) -> None:
        grad = g.dense
        if group["momentum"] == 0:
            p.sub_(grad * lr)
            return
        m = self._state(p).setdefault("momentum", torch.zeros_like(p))
        momentum = _as_keras(group["momentum"], p)
        m.copy_(m * momentum - grad * lr)
        if group["nesterov"]:
            p.add_(m * momentum - grad * lr)
        else:
            p.add_(m)


class Adagrad(KerasOptimizer):
    """Keras Adagrad: accumulator starts at 0.1 (initial_accumulator_value), a += g^2,
    w -= lr * g / sqrt(a + epsilon) (epsilon inside the root)."""

    def __init__(
        self,
        params: Params,
        learning_rate: float = ADAGRAD_LEARNING_RATE,
        initial_accumulator_value: float = ADAGRAD_INITIAL_ACCUMULATOR_VALUE,
        epsilon: float = OPTIMIZER_EPSILON,
        weight_decay: float | None = None,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        defaults = {
            "lr": learning_rate,
            "initial_accumulator_value": initial_accumulator_value,
            "epsilon": epsilon,
            "weight_decay": weight_decay,
        }
        super().__init__(
            params,
            defaults,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
        )

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        # Keras' Constant initializer: the value as float32, then the variable's dtype.
        start = _as_keras(self.defaults["initial_accumulator_value"], p)
        return {"accumulator": torch.full_like(p, float(start))}

    def update(self, p: Tensor, g: _Grad, lr: Tensor, t: Tensor, group: dict[str, Any]) -> None:
        acc = self._state(p)["accumulator"]
        acc.add_(g.square())
        p.sub_((lr * g.dense) / torch.sqrt(acc + group["epsilon"]))


#: Keras optimizer class names -> ours (for reading a Keras file's optimizer config).
OPTIMIZERS: dict[str, type[KerasOptimizer]] = {
    "Adam": Adam,
    "AdamW": AdamW,
    "RMSprop": RMSprop,
    "SGD": SGD,
    "Adagrad": Adagrad,
}
