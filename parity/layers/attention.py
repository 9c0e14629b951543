"""DeepMoji's attention pooling, ``AttentionWeightedAverage`` (deepmoji/attlayer.py).

Ported as DeepMoji computes it, not as torchMoji does: the max subtracted before ``exp`` is taken
per row over all steps (masked ones included), and ``ATTENTION_EPSILON`` is added to the
denominator. Both change the weights measurably on short rows.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from parity.conventions import ATTENTION_EPSILON, ATTENTION_UNIFORM_LIMIT


class AttentionWeightedAverage(nn.Module):
    """Softmax-over-time attention with one weight per feature; returns the weighted mean.

    ``weight`` is (input_size, 1), the layout of Keras' ``W``, so conversion is the identity.
    """

    def __init__(
        self,
        input_size: int,
        return_attention: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.return_attention = return_attention
        self.weight = nn.Parameter(torch.empty(input_size, 1, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DeepMoji's own init: Keras 'uniform', U(-0.05, 0.05)."""
        nn.init.uniform_(self.weight, -ATTENTION_UNIFORM_LIMIT, ATTENTION_UNIFORM_LIMIT)

    def extra_repr(self) -> str:
        return f"{self.input_size}, return_attention={self.return_attention}"

    def forward(
        self, x: Tensor, mask: Tensor | None = None, *, return_attention: bool | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x: (B, T, d); mask: (B, T), True = real step. Returns (B, d) [and weights (B, T)]."""
        logits = (x @ self.weight).squeeze(-1)  # (B, T)
        # DeepMoji's max trick: the max runs over every step, masked ones included.
        a = torch.exp(logits - logits.amax(dim=1, keepdim=True))  # (B, T)
        if mask is not None:
            a = a * mask.to(a.dtype)
        att = a / (a.sum(dim=1, keepdim=True) + ATTENTION_EPSILON)  # (B, T)
        # The weighted sum over time as one batched matrix product: no (B, T, d) temporary.
        out = torch.bmm(att.unsqueeze(1), x).squeeze(1)  # (B, d)
        if self.return_attention if return_attention is None else return_attention:
            return out, att
        return out
