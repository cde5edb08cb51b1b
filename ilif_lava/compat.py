"""Python 3.11 compatibility for lava-nc 0.10.0, applied at import time.

lava-nc 0.10.0 declares Python <3.11. The only thing that breaks on 3.11 is
``lava/magma/compiler/var_model.py``: dataclasses there use an instance of the (unhashable)
dataclass ``ByteEncoder`` as a field default, which Python 3.11 rejects as a "mutable default".

We never edit site-packages. Instead :func:`install` registers a meta-path finder that, when
``lava.magma.compiler.var_model`` is imported, loads its source, rewrites exactly those defaults to
``field(default_factory=ByteEncoder)`` and executes the result as that module. The rewrite is
a no-op on Python 3.10 (the original works there) but harmless, so one code path serves both.
Lava starts its process models with ``fork``, so child processes inherit the patched module.

The same finder also rewrites Lava's import-time ``mp.set_start_method('fork')`` so that it does not fail
when the default context is already ``fork`` (:func:`patch_mp_source`): import order never matters; and it
silences two import-time notices that say nothing to an ilif-lava user: slayer's Prophesee-toolbox warning
(:func:`patch_prophesee_source`) and torch's "No CUDA runtime is found" log line on CPU machines. It also makes
slayer's rarely used, slow-to-import parts (``io``, ``object_detection``/``obd``, ``utils.LearningStats``: they
pull in torchvision, torch's dynamo, sympy and matplotlib) load on first use (:func:`patch_lazy_source`), so
importing slayer's neurons and blocks costs little more than torch itself.

``import ilif_lava`` calls :func:`install` before anything else; it is idempotent.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from types import ModuleType
from typing import Optional, Sequence

TARGET = "lava.magma.compiler.var_model"
_DEFAULT_RE = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*=\s*)ByteEncoder\(\)\s*$", re.MULTILINE)


MP_TARGET = "lava.magma.runtime.message_infrastructure.multiprocessing"
_MP_RE = re.compile(r"^(\s+)mp\.set_start_method\('fork'\)\s*$", re.MULTILINE)


def patch_mp_source(source: str) -> str:
    """Lava's runtime calls ``mp.set_start_method('fork')`` at import, which raises "context has already been set"
    when anything touched the default context first (a tqdm bar creates a multiprocessing lock; so do DataLoader
    workers), even though that context is already 'fork' (Linux's default). Rewritten to set it only when unset;
    a different method set earlier still raises, as it must (Lava needs fork)."""
    return _MP_RE.sub(r"\1mp.get_start_method(allow_none=True) == 'fork' or mp.set_start_method('fork')", source)


def patch_source(source: str) -> str:
    """Return var_model.py source with ``x: ByteEncoder = ByteEncoder()`` made a default_factory."""
    # ``__import__`` keeps the rewrite local to the line (the file starts with a __future__ import).
    return _DEFAULT_RE.sub(r"\1__import__('dataclasses').field(default_factory=ByteEncoder)", source)


class _VarModelLoader(importlib.abc.SourceLoader):
    def __init__(self, fullname: str, path: str) -> None:
        self.fullname, self.path = fullname, path
        self.patch = PATCHES[fullname]

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        with open(path, "rb") as fh:
            data = fh.read()
        if path == self.path:
            return self.patch(data.decode("utf-8")).encode("utf-8")
        return data

    def path_stats(self, path: str):  # no bytecode cache for the rewritten module
        raise OSError


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None):
        if fullname not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        return importlib.util.spec_from_file_location(fullname, spec.origin,
                                                      loader=_VarModelLoader(fullname, spec.origin))


PROPHESEE_TARGET = "lava.lib.dl.slayer.object_detection.dataset.prophesee_automotive"
_PROPHESEE_RE = re.compile(r"^(\s+)print\(.*(Prophesee Dataset Toolbox|Prophesee DVS demo|Please install it from).*$",
                           re.MULTILINE)


def patch_prophesee_source(source: str) -> str:
    """slayer's Prophesee dataset module prints a three-line warning to stdout at import (every import of slayer)
    when the Prophesee toolbox is absent; ilif-lava never uses that dataset, so those three prints become ``pass``."""
    return _PROPHESEE_RE.sub(r"\1pass", source)


class _NoCudaNotice:
    """A logging filter dropping torch's import-time "No CUDA runtime is found" line (a CPU machine is normal)."""

    def filter(self, record) -> bool:  # noqa: A003 - logging's name
        return "No CUDA runtime is found" not in record.getMessage()


SLAYER_TARGET = "lava.lib.dl.slayer"
SLAYER_UTILS_TARGET = "lava.lib.dl.slayer.utils"
#: names slayer's package ``__init__`` files import eagerly that are loaded on first use instead: name ->
#: (module relative to the package, attribute of it or None). They are the whole cost of ``import
#: lava.lib.dl.slayer`` beyond torch: ``object_detection`` imports torchvision, which imports torch's dynamo and
#: sympy (seconds); ``io`` and ``utils.stats`` import matplotlib's pyplot. Nothing else in slayer imports them.
LAZY_NAMES = {
    SLAYER_TARGET: {"io": (".io", None), "obd": (".object_detection", None),
                    "object_detection": (".object_detection", None)},
    SLAYER_UTILS_TARGET: {"stats": (".stats", None), "LearningStat": (".stats", "LearningStat"),
                          "LearningStats": (".stats", "LearningStats")},
}
_EAGER_RE = {
    SLAYER_TARGET: re.compile(r"^from \. import (io|object_detection as obd)\s*$", re.MULTILINE),
    SLAYER_UTILS_TARGET: re.compile(r"^from \.stats import LearningStat, LearningStats\s*$", re.MULTILINE),
}
_LAZY_GETATTR = """

def __getattr__(name):  # ilif_lava.compat: loaded on first use (PEP 562)
    import importlib
    lazy = {names!r}
    if name not in lazy:
        raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")
    module, attr = lazy[name]
    value = importlib.import_module(module, __name__)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value
"""


def patch_lazy_source(fullname: str, source: str) -> str:
    """slayer's package ``__init__`` (or its ``utils``) with the imports of :data:`LAZY_NAMES` removed and a
    module ``__getattr__`` that imports each on first access (``slayer.io``, ``slayer.obd``,
    ``from lava.lib.dl.slayer import io``, ``slayer.utils.LearningStats`` work as before). A source that does not
    hold exactly the expected import lines is returned unchanged (eager, as installed)."""
    names = LAZY_NAMES[fullname]
    pattern = _EAGER_RE[fullname]
    expected = 2 if fullname == SLAYER_TARGET else 1
    if len(pattern.findall(source)) != expected:
        return source
    return pattern.sub("", source) + _LAZY_GETATTR.format(names=names)


PATCHES = {TARGET: patch_source, MP_TARGET: patch_mp_source, PROPHESEE_TARGET: patch_prophesee_source,
           SLAYER_TARGET: lambda src: patch_lazy_source(SLAYER_TARGET, src),
           SLAYER_UTILS_TARGET: lambda src: patch_lazy_source(SLAYER_UTILS_TARGET, src)}


def install() -> None:
    """Register the finder (idempotent). Must run before Lava's compiler is first imported."""
    import logging
    torch_log = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _NoCudaNotice) for f in torch_log.filters):
        torch_log.addFilter(_NoCudaNotice())
    if any(isinstance(f, _VarModelFinder) for f in sys.meta_path):
        return
    if TARGET in sys.modules:  # imported before us: only fine if it imported successfully (3.10)
        return
    sys.meta_path.insert(0, _VarModelFinder())


def is_installed() -> bool:
    return any(isinstance(f, _VarModelFinder) for f in sys.meta_path)


def check_lava_importable() -> None:
    """Import the parts of Lava the project uses; raise with a clear message if that fails."""
    install()
    try:
        import lava.magma.compiler.compiler  # noqa: F401
        import lava.lib.dl.netx  # noqa: F401
        import lava.lib.dl.slayer  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"Lava could not be imported on Python {sys.version.split()[0]}: {exc}. "
            "Run ./scripts/setup_env.sh (or `make test`) to build the pinned environment.") from exc
