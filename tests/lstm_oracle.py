"""Shared by the LSTM loop tests: one forward and backward with fixed cotangents, and the
comparison of two such runs (a fast loop against the reference loop)."""

from __future__ import annotations

import torch

#: (outputs by name, gradients by name) of one run.
Run = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


def outputs_and_grads(
    model: torch.nn.Module,
    x: torch.Tensor,
    hx: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor | None,
) -> Run:
    """The layer's output, h_n and c_n, and the gradients of sum(each * fixed random weights)
    with respect to every parameter, the input and the initial state. The weights are drawn
    in float32 on CPU and cast, so runs in different dtypes and devices get the same ones."""
    model.zero_grad(set_to_none=True)
    xi = x.detach().clone().requires_grad_()
    hxi = tuple(t.detach().clone().requires_grad_() for t in hx)
    out, (h_n, c_n) = model(xi, hxi, mask=mask)
    g = torch.Generator().manual_seed(1)
    cot = [torch.randn(t.shape, generator=g).to(t) for t in (out, h_n, c_n)]
    sum((t * w).sum() for t, w in zip((out, h_n, c_n), cot, strict=True)).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads |= {"input": xi.grad, "h0": hxi[0].grad, "c0": hxi[1].grad}
    return {"output": out, "h_n": h_n, "c_n": c_n}, grads


def assert_runs_close(
    got: Run, expected: Run, out_tol: object, grad_tol: object, where: str
) -> None:
    """Every output and gradient of ``got`` against ``expected`` (cast to got's dtype), with the
    tolerance table's entries for outputs and gradients."""
    for kind, tol in ((0, out_tol), (1, grad_tol)):
        for name, want in expected[kind].items():
            have = got[kind][name]
            torch.testing.assert_close(
                have, want.to(have.dtype), rtol=tol.rtol, atol=tol.atol,
                msg=lambda m, w=f"{where} {name}": f"{w}: {m}",
            )  # fmt: skip
