"""The fused ILIF kernels as torch custom operators, so ``torch.compile`` traces a model that uses them.

Four operators in the ``ilif_lava`` namespace (``torch.ops.ilif_lava.*``), each with a fake implementation (shapes
and dtypes only) for tracing:

* ``float_forward(z, lam, coefs, codes, backend) -> (spikes, h, m, c, i)``: the float ILIF sequence; the last four are what the
  backward pass reads (empty when not saved or not used). Differentiable in ``z`` and ``lam``
  (:func:`torch.library.register_autograd`, whose backward is the next operator).
* ``float_backward(grad_out, z, h, m, c, i, lam, ...) -> (grad_z, grad_lam)``.
* ``int_forward(a, ...) -> (spikes, u, v, c, m)``: the bit-exact integer sequence from int64 synaptic sums.
* ``int_forward_float(z, scale, bias, inner, ...) -> (spikes, u, v, c, m)``: the same from the float input, rounded
  in the kernel.

Every operator takes ``backend``: ``'cpu'`` (the compiled extension) or ``'gpu'`` (the Triton kernels); which one
runs is decided by :func:`ilif_lava.kernels.select` (eager) or
:func:`ilif_lava.kernels.traced_choice` (while compiling). Shapes: the
kernels' [M, T] (neurons flattened, time last). The saved tensors keep each backend's own layout: ``cpu`` blocks of
16 neurons [ceil(M / 16), T, 16] and the sign of ``c`` as one int32 bit word per block and step [ceil(M / 16), T],
``gpu`` time-major [T, M].

Outputs never alias inputs or each other (an operator contract): an unused output is its own empty tensor.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor

NAMESPACE = "ilif_lava"
BLOCK = 16  # neurons per block in the compiled CPU kernel's saved layout (ilif_cpu.cpp's B)


_resolver: Dict[str, Callable[[str], ModuleType]] = {}


def set_backend_resolver(fn: Callable[[str], ModuleType]) -> None:
    """Install the function that maps a backend name to its loaded module (:func:`ilif_lava.kernels.backend_module`,
    registered when :mod:`ilif_lava.kernels` is imported; this module imports nothing of the project)."""
    _resolver["fn"] = fn


def backend_module(backend: str) -> ModuleType:
    """The loaded module of a compiled kernel by name ('cpu' or 'gpu'). The resolver is always installed: importing
    this module runs the package's ``__init__`` first."""
    return _resolver["fn"](backend)


def _own(outputs, like: Tensor) -> Tuple[Tensor, ...]:
    """The kernel's outputs with each empty (unused) one replaced by a fresh empty tensor of its dtype, so no two
    outputs share storage (a backend may return one shared empty tensor for every unused output)."""
    return tuple(t if t.numel() else like.new_empty(0, dtype=t.dtype) for t in outputs)


# ---- float forward ------------------------------------------------------------------------------------------------

@torch.library.custom_op(f"{NAMESPACE}::float_forward", mutates_args=())
def float_forward(z: Tensor, lam: Tensor, coefs: List[float], codes: List[int], backend: str
                  ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """z [M, T] float32/float64, lam a 1-element tensor (the membrane's kept fraction) -> spikes [M, T] and the four
    saved tensors (empty unless ``save``).

    ``coefs`` = [beta, kappa, cur_kept, threshold, sg_p1, sg_p2], ``codes`` = [mpiu, ciu, inhibition (0 sigmoid,
    1 PLAN), sg_kind (0 rectangle, 1 exp, 2 sigmoid), ciu_pass_at_zero, save] (:func:`float_args`). The surrogate
    and the CIU gradient rule at ``c = 0`` are read by the backward pass only. Packed in two lists because torch
    re-reads the schema per argument on every differentiable call."""
    beta, kappa, cur_kept, threshold = coefs[:4]
    mpiu, ciu, inhibition, save = bool(codes[0]), bool(codes[1]), codes[2], bool(codes[5])
    mod = backend_module(backend)
    res = mod.forward_float(z.contiguous(), float(lam.reshape(())), beta, kappa, cur_kept, threshold, mpiu, ciu,
                            inhibition, save)
    return _own(res, z)


def float_args(beta: float, kappa: float, cur_kept: float, threshold: float, mpiu: bool, ciu: bool,
               inhibition: int, sg_kind: int, sg_p1: float, sg_p2: float, ciu_pass_at_zero: bool,
               save: bool) -> Tuple[List[float], List[int]]:
    """(coefs, codes) of :func:`float_forward` from named parameters."""
    return ([float(beta), float(kappa), float(cur_kept), float(threshold), float(sg_p1), float(sg_p2)],
            [int(mpiu), int(ciu), int(inhibition), int(sg_kind), int(ciu_pass_at_zero), int(save)])


@float_forward.register_fake
def _float_forward_fake(z, lam, coefs, codes, backend):
    m, t = z.shape
    mpiu, ciu, save, cur_kept = codes[0], codes[1], codes[5], coefs[2]
    saved = ((-(-m // BLOCK), t, BLOCK) if backend == "cpu" else (t, m))
    empty = z.new_empty(0)
    sh = z.new_empty(saved) if save else empty.clone()
    sm = z.new_empty(saved) if save and mpiu else empty.clone()
    if backend == "cpu":
        sc = z.new_empty(saved[:2], dtype=torch.int32) if save and ciu else empty.clone()
    else:
        sc = z.new_empty(saved) if save and ciu else empty.clone()
    # the previous current: the GPU kernel saves it only with current memory (else it reads z), the CPU kernel always
    si = z.new_empty(saved) if save and ciu and (cur_kept != 0.0 or backend == "cpu") else empty.clone()
    return z.new_empty((m, t)), sh, sm, sc, si


# ---- float backward -----------------------------------------------------------------------------------------------

@torch.library.custom_op(f"{NAMESPACE}::float_backward", mutates_args=())
def float_backward(grad_out: Tensor, z: Tensor, sh: Tensor, sm: Tensor, sc: Tensor, si: Tensor, lam: Tensor,
                   beta: float, kappa: float, cur_kept: float, threshold: float, mpiu: bool, ciu: bool,
                   inhibition: int, sg_kind: int, sg_p1: float, sg_p2: float, ciu_pass_at_zero: bool,
                   need_glam: bool, backend: str) -> Tuple[Tensor, Tensor]:
    """-> (grad z [M, T], grad lambda: a float64 scalar, or an empty float64 tensor unless ``need_glam``).
    ``sg_kind``: 0 rectangle, 1 exp, 2 sigmoid (parameters as :func:`ilif_lava.kernels.surrogate_args`)."""
    mod = backend_module(backend)
    res = mod.backward_float(grad_out.to(z.dtype).contiguous(), z.contiguous(), sh, sm, sc, si,
                             float(lam.reshape(())), beta, kappa, cur_kept, threshold, mpiu, ciu, inhibition,
                             sg_kind, sg_p1, sg_p2, ciu_pass_at_zero, need_glam)
    return _own(res, z)


@float_backward.register_fake
def _float_backward_fake(grad_out, z, sh, sm, sc, si, lam, beta, kappa, cur_kept, threshold, mpiu, ciu,
                         inhibition, sg_kind, sg_p1, sg_p2, ciu_pass_at_zero, need_glam, backend):
    glam = z.new_empty((), dtype=torch.float64) if need_glam else z.new_empty(0, dtype=torch.float64)
    return z.new_empty(z.shape), glam


def _float_setup_context(ctx, inputs, output) -> None:
    z, lam, coefs, codes, backend = inputs
    ctx.set_materialize_grads(False)  # the four saved outputs get no gradient: no zero tensors of their size
    if not codes[5]:
        ctx.params = None
        return
    ctx.save_for_backward(z, lam, *output[1:])
    beta, kappa, cur_kept, threshold, sg_p1, sg_p2 = coefs
    mpiu, ciu, inhibition, sg_kind, pass_at_zero = codes[:5]
    ctx.params = (beta, kappa, cur_kept, threshold, bool(mpiu), bool(ciu), inhibition, sg_kind, sg_p1, sg_p2,
                  bool(pass_at_zero), backend)


def _float_backward_rule(ctx, grad_out, *unused_grads):
    if ctx.params is None:
        raise RuntimeError("ilif_lava::float_forward ran with save=False; it has no backward pass")
    z, lam, sh, sm, sc, si = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(z)
    need_glam = bool(ctx.needs_input_grad[1])
    gz, glam = float_backward(grad_out, z, sh, sm, sc, si, lam, *ctx.params[:11], need_glam, ctx.params[11])
    glam_out = glam.to(lam.dtype).reshape(lam.shape) if need_glam else None
    return gz, glam_out, None, None, None


float_forward.register_autograd(_float_backward_rule, setup_context=_float_setup_context)


# ---- integer forward ----------------------------------------------------------------------------------------------

def _int_fake(shape_like: Tensor, record: bool, out_dtype: torch.dtype):
    m, t = shape_like.shape
    rec = [shape_like.new_empty((m, t) if record else (0,), dtype=torch.int64) for _ in range(4)]
    return (shape_like.new_empty((m, t), dtype=out_dtype), *rec)


@torch.library.custom_op(f"{NAMESPACE}::int_forward", mutates_args=())
def int_forward(a: Tensor, vth: int, i_decay: int, v_decay: int, c_decay: int, m_decay: int, mpiu: bool, ciu: bool,
                record: bool, out_dtype: torch.dtype, input_shift: int, backend: str
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """a [M, T] int64 synaptic sums -> (spikes [M, T] of ``out_dtype``, u, v, c, m [M, T] int64, empty unless
    ``record``); ``vth`` is ``vth_mant << 6``, decays are Loihi's 12-bit integers."""
    mod = backend_module(backend)
    res = mod.forward_int(a.contiguous(), vth, i_decay, v_decay, c_decay, m_decay, mpiu, ciu, record, out_dtype,
                          input_shift)
    return _own(res, a)


@int_forward.register_fake
def _int_forward_fake(a, vth, i_decay, v_decay, c_decay, m_decay, mpiu, ciu, record, out_dtype, input_shift,
                      backend):
    return _int_fake(a, record, out_dtype)


@torch.library.custom_op(f"{NAMESPACE}::int_forward_float", mutates_args=())
def int_forward_float(z: Tensor, scale: float, bias: Tensor, inner: int, vth: int, i_decay: int, v_decay: int,
                      c_decay: int, m_decay: int, mpiu: bool, ciu: bool, record: bool, out_dtype: torch.dtype,
                      input_shift: int, backend: str) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`int_forward` of ``a = round(z * scale) + bias[(row // inner) % C]``: z [M, T] float, ``scale`` a power
    of two, ``bias`` int64 [C] in input units or an empty tensor."""
    mod = backend_module(backend)
    res = mod.forward_int_float(z.contiguous(), scale, bias.contiguous(), inner, vth, i_decay, v_decay, c_decay,
                                m_decay, mpiu, ciu, record, out_dtype, input_shift)
    return _own(res, z)


@int_forward_float.register_fake
def _int_forward_float_fake(z, scale, bias, inner, vth, i_decay, v_decay, c_decay, m_decay, mpiu, ciu, record,
                            out_dtype, input_shift, backend):
    return _int_fake(z, record, out_dtype)
