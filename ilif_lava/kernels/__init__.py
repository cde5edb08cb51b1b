"""Fused ILIF kernels and the switch that picks one.

Three paths compute the same ILIF sequence (float forward + analytic backward, and the bit-exact integer forward):

* ``torch``: :class:`ilif_lava.dynamics.ILIFSequence` and :func:`ilif_lava.fixed_point.ilif_step`, plain PyTorch;
  the specification's executable form and the fallback that runs everywhere.
* ``cpu``: the compiled C++ extension ``ilif_cpu.cpp`` (blocks of 16 neurons, multithreaded with
  ``at::parallel_for``), built once by ``scripts/setup_env.sh`` or on first use (:mod:`ilif_lava.kernels.cpu_build`).
* ``gpu``: the Triton kernels of :mod:`ilif_lava.kernels.ilif_triton`, for CUDA tensors.

``ILIF_LAVA_KERNEL=torch|cpu|gpu|auto`` (default ``auto``: ``gpu`` for CUDA tensors when Triton imports, ``cpu``
for CPU tensors when the extension builds, else ``torch``) picks the path. :func:`last_used` tells which ran, for
reports and benchmarks. A requested kernel that cannot run raises :class:`KernelUnavailable` (one line).

Shapes: kernels take [M, T] (neurons flattened, time last); callers pass [..., T].
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import Dict, NamedTuple, Optional, Tuple, Union

import torch
from ilif_lava.errors import IlifLavaError
from ilif_lava.kernels import custom_ops

CHOICES = ("auto", "torch", "cpu", "gpu")
ENV = "ILIF_LAVA_KERNEL"
FLOAT_DTYPES = (torch.float32, torch.float64)
TRITON_MODULE = "ilif_lava.kernels.ilif_triton"
INHIBITION_CODES = {"sigmoid": 0, "plan": 1}
SURROGATE_CODES = {"rectangle": 0, "exp": 1, "sigmoid": 2}

_last: Dict[str, str] = {}
_triton: Dict[str, object] = {"module": None, "tried": False, "error": None}


class KernelUnavailable(IlifLavaError, RuntimeError):
    """The kernel asked for (``ILIF_LAVA_KERNEL`` or an argument) cannot run here."""


def requested(kernel: Optional[str] = None) -> str:
    """The requested kernel: ``kernel`` if given, else ``$ILIF_LAVA_KERNEL``, else 'auto'."""
    name = (kernel or os.environ.get(ENV) or "auto").strip().lower()
    if name not in CHOICES:
        raise KernelUnavailable(f"{ENV}={name!r} is not a kernel; choose one of {', '.join(CHOICES)}")
    return name


def _cpu_module() -> Optional[ModuleType]:
    from ilif_lava.kernels import cpu_build
    return cpu_build.load()


def _triton_module() -> Optional[ModuleType]:
    if not _triton["tried"]:
        _triton["tried"] = True
        try:
            from ilif_lava.kernels import ilif_triton
            _triton["module"] = ilif_triton
        except Exception as exc:  # noqa: BLE001 - no triton, or a triton that cannot initialise
            _triton["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return _triton["module"]  # type: ignore[return-value]


def backend_module(name: str) -> ModuleType:
    """The loaded backend module of the compiled kernel ``name`` ('cpu' or 'gpu'); :class:`KernelUnavailable` when
    it cannot run (the custom operators of :mod:`ilif_lava.kernels.custom_ops` call this)."""
    mod = _cpu_module() if name == "cpu" else _triton_module() if name == "gpu" else None
    if mod is None:
        raise KernelUnavailable(f"the {name!r} kernel is unavailable here (compiled kernels: 'cpu', 'gpu')")
    return mod


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def select(x: torch.Tensor, kernel: Optional[str] = None, integer: bool = False) -> Tuple[str, Optional[ModuleType]]:
    """(name, backend module) of the kernel that will run for tensor ``x``; backend None means the torch path."""
    name = requested(kernel)
    if name == "torch":
        return "torch", None
    dtype_ok = integer or x.dtype in FLOAT_DTYPES
    if name == "auto":
        if not dtype_ok:
            return "torch", None
        if x.is_cuda:
            mod = _triton_module()
            return ("gpu", mod) if mod is not None else ("torch", None)
        if x.device.type == "cpu":
            mod = _cpu_module()
            return ("cpu", mod) if mod is not None else ("torch", None)
        return "torch", None
    if not dtype_ok:
        raise KernelUnavailable(f"{ENV}={name}: the {name} kernel runs float32/float64, got {x.dtype}")
    if name == "cpu":
        if x.device.type != "cpu":
            raise KernelUnavailable(f"{ENV}=cpu but the tensors are on {x.device}; use gpu, torch or auto")
        mod = _cpu_module()
        if mod is None:
            from ilif_lava.kernels import cpu_build
            raise KernelUnavailable(f"{ENV}=cpu but the compiled kernel is unavailable ({cpu_build.error()})")
        return "cpu", mod
    # gpu: CUDA tensors, or CPU tensors under Triton's interpreter (how CI proves the kernel without a GPU)
    if not (x.is_cuda or (_interpreting() and x.device.type == "cpu")):
        raise KernelUnavailable(f"{ENV}=gpu but the tensors are on {x.device} (set TRITON_INTERPRET=1 to run the "
                                "Triton kernel on the CPU)")
    mod = _triton_module()
    if mod is None:
        raise KernelUnavailable(f"{ENV}=gpu but Triton is unavailable ({_triton['error']})")
    return "gpu", mod


def note_used(path: str, name: str) -> None:
    """Record which kernel ran for ``path`` ('float' or 'integer')."""
    _last[path] = name


def last_used() -> Dict[str, str]:
    """Which kernel ran last, per path: {'float': 'cpu', 'integer': 'cpu'}, as far as each has run."""
    return dict(_last)


def describe() -> Dict[str, object]:
    """What the switch would pick and why (for reports and benchmarks)."""
    from ilif_lava.kernels import cpu_build
    info: Dict[str, object] = {"requested": requested(), "last_used": last_used(), "threads": torch.get_num_threads()}
    info["cpu_kernel"] = "built" if cpu_build.load(quiet=True) is not None else f"unavailable: {cpu_build.error()}"
    info["gpu_kernel"] = ("available" if torch.cuda.is_available() and _triton_module() is not None
                          else "no CUDA device" if not torch.cuda.is_available() else f"unavailable: {_triton['error']}")
    return info


class FloatConfig(NamedTuple):
    """Static parameters of the float sequence (threshold units; multipliers are kept fractions)."""

    beta: float
    kappa: float
    cur_kept: float
    threshold: float
    mpiu: bool
    ciu: bool
    inhibition: str          # 'sigmoid' | 'plan'
    surrogate: object        # ilif_lava.surrogate.Surrogate
    ciu_pass_at_zero: bool   # CIU rectifier gradient at exactly C = 0: True = passes (clamp), False = 0 (relu)


def surrogate_args(sg) -> Tuple[int, float, float]:
    """(kind code of :data:`SURROGATE_CODES`, p1, p2) of a :class:`ilif_lava.surrogate.Surrogate` as the kernels
    read it: rectangle (gamma, -), exp (scale / (2 tau), tau), sigmoid (alpha, -)."""
    if sg.kind == "rectangle":
        p1, p2 = sg.gamma, 0.0
    elif sg.kind == "exp":
        p1, p2 = sg.scale / (2 * sg.tau), sg.tau
    else:
        p1, p2 = sg.alpha, 0.0
    return SURROGATE_CODES[sg.kind], p1, p2


def kernel_name(backend: Union[str, ModuleType]) -> str:
    """'cpu' or 'gpu' for a compiled kernel given by name or by the backend module :func:`select` returns."""
    if isinstance(backend, str):
        return backend
    return "gpu" if backend.__name__ == TRITON_MODULE else "cpu"


def _constant_to_compiler(fn):
    """What :func:`torch.compiler.assume_constant_result` does, without its import of ``torch._dynamo`` (1.2-1.5 s
    here, which importing the blocks should not pay): dynamo reads this marker when it traces a call of ``fn``.
    ``tests/test_custom_ops.py`` compiles a model with ``fullgraph=True``, so it fails if the marker stops working."""
    fn._dynamo_marked_constant = True
    return fn


@_constant_to_compiler
def traced_choice(kernel: str, device: torch.device, dtype: torch.dtype, integer: bool) -> str:
    """:func:`select`'s kernel name for a tensor on ``device`` of ``dtype``, as a constant to ``torch.compile``: the
    build lock and the imports behind :func:`select` run once, when the model is traced (a change of
    ``ILIF_LAVA_KERNEL`` after that needs a new ``torch.compile``)."""
    return select(torch.empty(0, device=device, dtype=dtype), kernel or None, integer)[0]


def choose(x: torch.Tensor, kernel: Optional[str] = None, integer: bool = False) -> str:
    """The kernel name :func:`select` picks for ``x``, also while ``torch.compile`` traces (:func:`traced_choice`)."""
    if torch.compiler.is_compiling():
        return traced_choice(kernel or "", x.device, x.dtype, integer)
    return select(x, kernel, integer)[0]


def float_sequence(backend: Union[str, ModuleType], z: torch.Tensor, lam: torch.Tensor, cfg: FloatConfig,
                   save: bool = True) -> torch.Tensor:
    """Float ILIF over T steps on a compiled backend ('cpu' or 'gpu'), differentiable in ``z`` and ``lam`` when
    ``save`` (the custom op ``ilif_lava::float_forward``, :mod:`ilif_lava.kernels.custom_ops`); without ``save``
    nothing is kept for a backward pass (inference). z [..., T] -> spikes [..., T]; same contract as
    :class:`ilif_lava.dynamics.ILIFSequence`."""
    kind, p1, p2 = surrogate_args(cfg.surrogate)
    coefs, codes = custom_ops.float_args(cfg.beta, cfg.kappa, cfg.cur_kept, cfg.threshold, cfg.mpiu, cfg.ciu,
                                         INHIBITION_CODES[cfg.inhibition], kind, p1, p2, cfg.ciu_pass_at_zero, save)
    out = custom_ops.float_forward(z.reshape(-1, z.shape[-1]), lam, coefs, codes, kernel_name(backend))[0]
    return out.reshape(z.shape)


def integer_forward(backend: Union[str, ModuleType], a: torch.Tensor, p, record: bool,
                    out_dtype: torch.dtype) -> Tuple[torch.Tensor, Optional[Dict[str, torch.Tensor]]]:
    """Bit-exact integer ILIF on a compiled backend. a [..., T] int64 (synaptic sums, entering the current as
    ``a << p.input_shift``) -> (spikes [..., T], states or None). ``p``: :class:`ilif_lava.fixed_point.ILIFParams`
    with scalar decays (:func:`scalar_params`)."""
    shape = a.shape
    a2 = a.reshape(-1, shape[-1]).to(torch.int64)
    res = custom_ops.int_forward(a2, int(p.vth_mant) << 6, int(p.i_decay), int(p.v_decay), int(p.c_decay),
                                 int(p.m_decay), bool(p.mpiu), bool(p.ciu), record, out_dtype, int(p.input_shift),
                                 kernel_name(backend))
    states = ({k: r.reshape(shape) for k, r in zip(("u", "v", "c", "m"), res[1:])} if record else None)
    return res[0].reshape(shape), states


def integer_forward_float(backend: Union[str, ModuleType], z: torch.Tensor, scale: int,
                          bias: Optional[torch.Tensor], p, record: bool, out_dtype: torch.dtype
                          ) -> Tuple[torch.Tensor, Optional[Dict[str, torch.Tensor]]]:
    """:func:`integer_forward` of ``a = round(z * scale) + bias`` without building ``a``: the kernel rounds the float
    synaptic input itself (half to even, as ``torch.round``), which saves four passes over the input.

    z [N, C, ..., T] float: the synaptic input in threshold units (multiples of ``1 / scale`` when the weights are
    quantized); ``scale`` a power of two, ``1 << (12 - p.input_shift)``, so ``a`` is the integer sum in input
    units; ``bias`` int64 [C] in input units (:func:`ilif_lava.fixed_point.bias_as_input`) or None (then ``z``
    may be any [..., T]). Returns (spikes shaped like ``z`` of ``out_dtype``, states or None)."""
    shape = z.shape
    if scale <= 0 or scale & (scale - 1):
        raise ValueError(f"integer_forward_float: scale must be a power of two, got {scale}")
    if bias is not None and (z.ndim < 3 or bias.numel() != shape[1]):
        raise ValueError(f"integer_forward_float: bias of {bias.numel()} channels for an input of shape "
                         f"{tuple(shape)} ([N, C, ..., T] expected)")
    if z.dtype not in FLOAT_DTYPES:
        # e.g. float16: round in torch, then the int64 entry point
        a = torch.round(z * scale).to(torch.int64)
        if bias is not None:
            a = a + bias.to(a.device).reshape((1, -1) + (1,) * (z.ndim - 2))
        return integer_forward(backend, a, p, record, out_dtype)
    z2 = z.reshape(-1, shape[-1])
    inner = 1
    for d in shape[2:-1]:
        inner *= int(d)
    b = (torch.empty(0, dtype=torch.int64, device=z.device) if bias is None
         else bias.reshape(-1).to(device=z.device, dtype=torch.int64).contiguous())
    res = custom_ops.int_forward_float(z2, float(scale), b, inner, int(p.vth_mant) << 6, int(p.i_decay),
                                       int(p.v_decay), int(p.c_decay), int(p.m_decay), bool(p.mpiu), bool(p.ciu),
                                       record, out_dtype, int(p.input_shift), kernel_name(backend))
    states = ({k: r.reshape(shape) for k, r in zip(("u", "v", "c", "m"), res[1:])} if record else None)
    return res[0].reshape(shape), states


def scalar_params(p) -> bool:
    """True when every decay of ``p`` (:class:`ilif_lava.fixed_point.ILIFParams`) is one integer (kernels need that)."""
    import numpy as np
    return all(np.ndim(getattr(p, f)) == 0 for f in ("i_decay", "v_decay", "c_decay", "m_decay")) \
        and p.inhibition == "plan"


custom_ops.set_backend_resolver(backend_module)
