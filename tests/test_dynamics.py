"""The fused sequence path (ILIFSequence, analytic backward) against the step-by-step autograd reference."""
import pytest
import torch

import ilif_lava  # noqa: F401
from ilif_lava.neuron import VARIANTS, Neuron


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("inhibition", ["sigmoid", "plan"])
@pytest.mark.parametrize("surrogate", ["rectangle", "exp", "sigmoid"])
@pytest.mark.parametrize("current_decay", [None, 0.5])
def test_fused_equals_reference(variant, inhibition, surrogate, current_decay):
    torch.manual_seed(hash((variant, inhibition, surrogate, current_decay)) % 1000)
    n = Neuron(tau=2.0, variant=variant, inhibition=inhibition, surrogate=surrogate,
               current_decay=current_decay, tau_grad=0.5, scale_grad=1.0).double()
    z = (torch.randn(3, 8, 25, dtype=torch.float64) * 1.5 + 0.6).requires_grad_()
    w = torch.randn(3, 8, 25, dtype=torch.float64)
    s_fast = n.float_dynamics(z)
    (s_fast * w).sum().backward()
    g_fast, z.grad = z.grad.clone(), None
    gw_fast = n.plif_w.grad.clone() if n.flags["plif"] else None
    if n.flags["plif"]:
        n.plif_w.grad = None
    s_ref = n.reference_dynamics(z)
    (s_ref * w).sum().backward()
    assert 0.05 < s_ref.mean() < 0.95, "inputs must make the neurons fire sometimes"
    assert torch.equal(s_fast, s_ref)
    assert g_fast.abs().sum() > 0
    torch.testing.assert_close(g_fast, z.grad, rtol=0, atol=1e-10)
    if gw_fast is not None:
        torch.testing.assert_close(gw_fast, n.plif_w.grad, rtol=0, atol=1e-10)


def test_quantized_ste_uses_fused_backward():
    """The QAT straight-through gradient equals the reference float gradient with quantized parameters."""
    torch.manual_seed(3)
    n = Neuron(tau=2.0, quantized=True).double()
    z = (torch.round(torch.randn(2, 6, 20, dtype=torch.float64) * 64) / 64).requires_grad_()
    n(z).sum().backward()
    g_ste, z.grad = z.grad.clone(), None
    n.reference_dynamics(z).sum().backward()
    torch.testing.assert_close(g_ste, z.grad, rtol=0, atol=1e-10)
