"""Structural validation of a netx HDF5 network file, before any Lava process is built.

:func:`validate_file` reads the whole file with h5py only (no Lava import) and raises one
:class:`NetworkFileError` for the first problem, naming the file, the layer index and the key, and saying
what was expected. It accepts exactly what ``lava.lib.dl.netx.hdf5.Network`` (through
:class:`ilif_lava.lava_proc.process.ILIFNetwork`) can build (lava-internals.md section 3):

* the file: exists, is HDF5 and readable (truncated or corrupted files included), has a group ``layer`` whose
  children are exactly ``'0'`` .. ``'N-1'``, each a group;
* layer types netx builds: ``input`` (layer 0 only), ``dense``, ``conv``, ``flatten`` (followed by a dense);
  the required keys of each type and the form of each key (the layer tables of :mod:`ilif_lava.netx_schema`);
* values: weights are real, finite, integer and in [-256, 255] (netx's weight range), and a dense layer's are
  not all zero (netx's ``optimize_weight_bits`` divides by the largest weight); delays are integers in
  [0, 62], one per output; biases are finite, one per output (all zero for ILIF, whose process has no bias);
* shapes: dense weight == (outFeatures, inFeatures), conv weight == (outChannels, inChannels / groups, kH, kW)
  with ``groups`` dividing both channel counts, ``shape`` consistent with outFeatures / outChannels;
* sizes along the network: a layer's input size equals the previous layer's output size, and a conv's
  declared ``shape`` equals the output computed from the previous shape, kernel, stride, padding, dilation;
* neurons: a type of the :class:`~ilif_lava.netx_schema.NeuronRegistry` handed in (default: the built-in tables,
  :data:`ilif_lava.netx_schema.NEURON_TYPES`; ILIFNetwork hands in :func:`ilif_lava.netx.neuron_registry`) and its
  keys, as scalars of the right kind and range.

Loihi bit-width head-room (even weights, 13-bit bias, ...) stays in :mod:`ilif_lava.loihi2`; only what a
loader needs in order to build a network that means what the file says is checked here.
"""
from __future__ import annotations

import contextlib
import os
import stat as _stat
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import h5py
import numpy as np

from ilif_lava import netx_schema as schema
from ilif_lava.netx_schema import (LAYER_TYPES, NEURON_TYPES, Choice, Flag, Int, K, NeuronRegistry,  # noqa: F401
                                   Numbers, T, Text)
from ilif_lava.netx_schema.rules import MAX_NEURONS

PathLike = Union[str, Path]

MAX_ELEMENTS = 1 << 26              # per dataset: read nothing larger (a corrupted header can claim huge dims)


from ilif_lava.file_limits import DEFAULT_LIMITS, FileLimits  # noqa: E402,F401  (light to import)
_active_limits: List[FileLimits] = []
BIG_KEYS = schema.big_keys()        # datasets that may be large
# HDF5's built-in filters (gzip, shuffle, fletcher32, szip) and h5py's LZF; anything else (a user-defined or
# dynamically loaded filter plugin) is refused before HDF5 could load code to decode it
ALLOWED_FILTERS = {h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle",
                   h5py.h5z.FILTER_FLETCHER32: "fletcher32", h5py.h5z.FILTER_SZIP: "szip",
                   h5py.h5z.FILTER_LZF: "lzf"}


@contextlib.contextmanager
def use_limits(limits: Optional[FileLimits]) -> Iterator[None]:
    """While active, :func:`validate_file` calls without ``limits`` (e.g. the one inside ``ILIFNetwork``) use
    ``limits`` (the CLI's ``--max-*`` flags)."""
    if limits is None:
        yield
        return
    _active_limits.append(limits)
    try:
        yield
    finally:
        _active_limits.pop()


def current_limits() -> FileLimits:
    return _active_limits[-1] if _active_limits else DEFAULT_LIMITS


class NetworkFileError(ValueError):
    """An HDF5 network description is unusable. The message names the file, the layer and the key."""


class UnsupportedLayerError(NetworkFileError, NotImplementedError):
    """A layer type that netx does not build (``pool``, ``average``, ...); also a ``NotImplementedError``, which
    is what netx itself raises for these types."""


# ---------------------------------------------------------------------------------------------------------
# reading (every h5py call is here; whatever h5py raises becomes a NetworkFileError)
# ---------------------------------------------------------------------------------------------------------
class _Where:
    """File + layer context for messages."""

    def __init__(self, path: Path, layer: Optional[int] = None) -> None:
        self.path, self.layer = path, layer

    def fail(self, key: Optional[str], problem: str, expected: str = "",
             cls: type = NetworkFileError) -> NetworkFileError:
        msg = f"{self.path}: "
        if self.layer is not None:
            msg += f"layer {self.layer}: "
        if key is not None:
            msg += f"key '{key}' "
        msg += problem + (f"; expected {expected}" if expected else "")
        return cls(msg)


def _children(w: _Where, g: h5py.Group, key: Optional[str]) -> Dict[str, Any]:
    """{name: Group or Dataset} of a group."""
    try:
        out = {name: g[name] for name in g.keys()}
    except Exception as exc:  # noqa: BLE001 - any h5py failure on a damaged file
        raise w.fail(key, f"is unreadable ({type(exc).__name__}: {exc})", "a readable HDF5 group") from None
    odd = [name for name in out if not isinstance(name, str)]        # h5py returns undecodable names as bytes
    if odd:
        raise w.fail(key, f"has a child named {odd[0]!r}, which is not UTF-8 text", "text names")
    return out


def _file_kind(mode: int) -> str:
    for test, name in ((_stat.S_ISDIR, "a directory"), (_stat.S_ISFIFO, "a FIFO"), (_stat.S_ISCHR, "a device"),
                       (_stat.S_ISBLK, "a device"), (_stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: PathLike) -> Path:
    """Raise :class:`NetworkFileError` unless ``path`` (after symlinks) is an existing regular file.

    Uses ``os.stat`` only: nothing is opened, so a FIFO or a device never blocks and is never read."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NetworkFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise NetworkFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not _stat.S_ISREG(st.st_mode):
        raise NetworkFileError(f"{path}: is {_file_kind(st.st_mode)}, expected a regular HDF5 file")
    return path


def _link_target_problem(h: h5py.File, start: h5py.Group, target: str, max_hops: int = 8) -> Optional[str]:
    """Follow a soft link's target path component by component without following anything outside the file:
    an external link on the way, a dangling path or a chain of more than ``max_hops`` soft links is a problem."""
    hops = 0
    parts: List[str] = [p for p in target.split("/") if p]
    node: h5py.Group = h if target.startswith("/") else start
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if not isinstance(node, h5py.Group) or name not in node.keys():
            return f"points to {target!r}, which does not exist"
        link = node.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return f"points through an external link to {link.filename}:{link.path}"
        if isinstance(link, h5py.SoftLink):
            hops += 1
            if hops > max_hops:
                return f"is a chain or loop of more than {max_hops} soft links"
            sub = [p for p in link.path.split("/") if p]
            if link.path.startswith("/"):
                node = h
            parts = sub + parts
            continue
        node = node.get(name)
    return None


def _dataset_problem(ds: h5py.Dataset, limits: FileLimits, big: bool,
                     max_vlen: int = 16) -> Tuple[Optional[str], str, int]:
    """(problem, expected, bytes) of one dataset from its metadata only (nothing is read)."""
    if ds.external:
        files = sorted({str(e[0]) for e in ds.external})
        return f"has external storage in {files}", "data stored inside this file", 0
    if ds.is_virtual:
        return "is a virtual dataset (data mapped from other files)", "data stored inside this file", 0
    dcpl = ds.id.get_create_plist()
    for i in range(dcpl.get_nfilters()):
        code, _flags, _vals, name = dcpl.get_filter(i)
        if code not in ALLOWED_FILTERS:
            label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            return (f"uses HDF5 filter {code} ({label!r})",
                    f"no filter or only {sorted(ALLOWED_FILTERS.values())}", 0)
    size = int(np.prod(ds.shape, dtype=object)) if ds.shape is not None else 0
    if ds.dtype.kind == "O" or h5py.check_vlen_dtype(ds.dtype) is not None:
        if dcpl.get_layout() != h5py.h5d.CONTIGUOUS:
            return "holds variable-length data outside contiguous storage", "contiguous variable-length data", 0
        if size > max_vlen:
            return f"holds {size} variable-length values", f"at most {max_vlen}", 0
        return None, "", size * 16
    nbytes = size * ds.dtype.itemsize
    numeric = ds.dtype.kind in "biuf" and ds.dtype.subdtype is None
    cap = limits.max_dataset_bytes if big and numeric else limits.max_key_bytes   # text / compound: small only
    if nbytes > cap:
        return (f"holds {nbytes} bytes ({size} values of {ds.dtype.itemsize} bytes, dtype {ds.dtype})",
                f"at most {cap} bytes", nbytes)
    return None, "", nbytes


def _walk(path: Path, h: h5py.File, limits: FileLimits, big_keys: Sequence[str] = BIG_KEYS,
          max_vlen: int = 16, heaps: bool = False) -> None:
    """Check every link and dataset of the file from metadata, before any data is read.

    Refused: external links, soft links that leave the file (through an external link), dangle or loop,
    datasets with external storage, virtual datasets, filters outside :data:`ALLOWED_FILTERS`, datasets over
    the byte limits (``dtype.itemsize * size``, so long strings and array-typed dtypes count in full), more than
    ``limits.max_links`` links or nesting deeper than ``limits.max_depth``. Links are examined with
    ``getlink=True`` so that nothing is followed. Datasets named in ``big_keys`` may hold up to
    ``limits.max_dataset_bytes``, others ``limits.max_key_bytes``; variable-length ones at most ``max_vlen``
    values, and with ``heaps`` their global heaps are walked too (:func:`_global_heap_problem`).
    """
    top = _Where(path)
    stack: List[Tuple[str, h5py.Group, int]] = [("", h, 0)]
    n_links, total = 0, 0
    while stack:
        gname, g, depth = stack.pop()
        try:
            count = len(g)
            if n_links + count > limits.max_links:
                raise top.fail(gname or "/", f"makes the file hold more than {limits.max_links} objects",
                               f"at most {limits.max_links} (max_layers = {limits.max_layers})")
            names = list(g.keys())
        except NetworkFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - damaged group
            raise top.fail(gname or "/", f"is unreadable ({type(exc).__name__}: {exc})",
                           "a readable HDF5 group") from None
        n_links += count
        for name in names:
            if not isinstance(name, str):
                raise top.fail(gname or "/", f"has a child named {name!r}, which is not UTF-8 text", "text names")
            full = f"{gname}/{name}" if gname else name
            try:
                link = g.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise top.fail(full, f"is an external link to {link.filename}:{link.path}",
                                   "data inside this file (external links are refused)")
                if isinstance(link, h5py.SoftLink):
                    problem = _link_target_problem(h, g, link.path)
                    if problem:
                        raise top.fail(full, f"is a soft link that {problem}", "links inside this file")
                    continue                       # its target is checked where it is hard-linked
                obj = g.get(name)
            except NetworkFileError:
                raise
            except Exception as exc:  # noqa: BLE001 - damaged object header
                raise top.fail(full, f"is unreadable ({type(exc).__name__}: {exc})", "a readable object") from None
            if isinstance(obj, h5py.Group):
                if depth + 1 >= limits.max_depth:
                    raise top.fail(full, f"is nested {depth + 2} levels deep", f"at most {limits.max_depth}")
                stack.append((full, obj, depth + 1))
            elif isinstance(obj, h5py.Dataset):
                try:
                    problem, expected, nbytes = _dataset_problem(obj, limits, name in big_keys, max_vlen)
                    if problem is None and heaps:
                        problem, expected = _global_heap_problem(path, obj), "a readable dataset"
                except Exception as exc:  # noqa: BLE001 - damaged dataset header
                    raise top.fail(full, f"is unreadable ({type(exc).__name__}: {exc})",
                                   "a readable dataset") from None
                if problem:
                    raise top.fail(full, problem, expected)
                total += nbytes
                if total > limits.max_total_bytes:
                    raise top.fail(full, f"brings the datasets to {total} bytes",
                                   f"at most {limits.max_total_bytes} bytes in total")


def _global_heap_problem(path: Path, ds: h5py.Dataset) -> Optional[str]:
    """Check the global heap collections a contiguous variable-length dataset points to, as HDF5 will parse them.

    A damaged collection can make HDF5 (2.0.0, ``H5HG__cache_heap_deserialize``) loop forever inside C code,
    where no Python signal can interrupt it: a free-space object of size 0 never advances the parser. Each
    collection is walked the same way here first (HDF5 file format, "Global Heap"). Compact and chunked
    datasets are not checked (h5py writes small datasets contiguous).
    """
    if ds.dtype.kind != "O" or ds.id.get_create_plist().get_layout() != h5py.h5d.CONTIGUOUS:
        return None
    offset = ds.id.get_offset()
    if offset is None:                                   # storage not allocated
        return None
    size_addr, size_len = ds.file.id.get_create_plist().get_sizes()
    elem = 4 + size_addr + 4                             # sequence length, collection address, object index
    with open(path, "rb") as f:
        f.seek(offset)
        raw = f.read(elem * ds.size)
        if len(raw) < elem * ds.size:
            return "points past the end of the file"
        for e in range(ds.size):
            r = raw[e * elem:(e + 1) * elem]
            length, addr = int.from_bytes(r[:4], "little"), int.from_bytes(r[4:4 + size_addr], "little")
            index = int.from_bytes(r[4 + size_addr:], "little")
            if length == 0 and addr == 0:
                continue
            f.seek(addr)
            head = f.read(8 + size_len)
            if len(head) < 8 + size_len or head[:5] != b"GCOL\x01":
                return f"points to a damaged global heap at byte {addr}"
            total = int.from_bytes(head[8:8 + size_len], "little")
            f.seek(addr)
            heap = f.read(total) if 0 < total <= 1 << 24 else b""
            if len(heap) != total or total < 8 + size_len:
                return f"points to a global heap at byte {addr} of invalid size {total}"
            found, p, hdr = False, 8 + size_len, 8 + size_len    # objects: index(2) refs(2) reserved(4) size
            while p + hdr <= total:
                idx = int.from_bytes(heap[p:p + 2], "little")
                osize = int.from_bytes(heap[p + 8:p + 8 + size_len], "little")
                need = osize if idx == 0 else hdr + (osize + 7) // 8 * 8
                if need <= 0 or need > total - p:
                    return f"points to a damaged global heap at byte {addr} (object at +{p})"
                found = found or (idx == index and idx > 0 and osize >= length)
                p += need
            if not found:
                return f"points to a missing object {index} in the global heap at byte {addr}"
    return None


def _read(w: _Where, obj: Any, key: str) -> np.ndarray:
    """The value of a dataset as a numpy array (0-d for scalars)."""
    if not isinstance(obj, h5py.Dataset):
        raise w.fail(key, "is a group", "a dataset")
    try:
        if obj.size is not None and obj.size > MAX_ELEMENTS:
            raise w.fail(key, f"claims {obj.size} elements", f"at most {MAX_ELEMENTS}")
        problem = _global_heap_problem(w.path, obj)
        if problem:
            raise w.fail(key, problem, "a readable dataset")
        return np.asarray(obj[()])
    except NetworkFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any h5py failure on a damaged file
        raise w.fail(key, f"is unreadable ({type(exc).__name__}: {exc})", "a readable dataset") from None


# ---------------------------------------------------------------------------------------------------------
# value checks
# ---------------------------------------------------------------------------------------------------------
def _text(w: _Where, a: np.ndarray, key: str, expected: str) -> str:
    """A single ASCII string (bytes or str, 0-d or 1 element), as netx's ``NetDict`` decodes it."""
    try:
        return schema.text(a)
    except ValueError as exc:
        raise w.fail(key, f"= {exc}", expected) from None


def _check(w: _Where, key: str, a: np.ndarray, rule: Any) -> Any:
    """Check ``a`` against a rule; returns the value (int, tuple of ints, str or bool)."""
    exp = schema.expected(rule)
    if isinstance(rule, Text):
        return _text(w, a, key, exp)
    if isinstance(rule, Choice):
        v = _text(w, a, key, exp)
        if a.ndim == 1 and a.dtype.kind == "O":        # ILIF's reader decodes 0-d or fixed-length strings only
            raise w.fail(key, f"= {v!r} is a 1-element variable-length string array (read as \"{a!s}\")",
                         f"{exp} as a scalar string")
        if v not in rule.values:
            raise w.fail(key, f"= {v!r}", exp)
        return v
    if a.dtype.kind not in ("biu" if isinstance(rule, Flag) else "iu"):
        raise w.fail(key, f"= {schema.show(a)} has dtype {a.dtype}", exp)
    if isinstance(rule, Flag):
        if a.size != 1 or a.ndim > 1 or int(a.reshape(-1)[0]) not in (0, 1):
            raise w.fail(key, f"= {schema.show(a)}", exp)
        return bool(a.reshape(-1)[0])
    sizes = {"scalar": (1,), "strict": (1,), "pair": (2,), "dims": (1, 2, 3)}[rule.form]
    ndim_ok = {"scalar": a.ndim <= 1, "strict": a.ndim == 0, "pair": a.ndim <= 1, "dims": a.ndim == 1}[rule.form]
    if not ndim_ok or (a.size not in sizes and not (rule.form == "pair" and a.ndim == 0)):
        raise w.fail(key, f"= {schema.show(a)} has shape {a.shape}", exp)
    if (a < rule.lo).any() or (a > rule.hi).any():
        raise w.fail(key, f"= {schema.show(a)} is out of range", exp)
    vals = tuple(int(x) for x in a.reshape(-1))
    if rule.form == "pair":
        return vals * 2 if len(vals) == 1 else vals
    return vals if rule.form == "dims" else vals[0]


def _numbers(w: _Where, key: str, a: np.ndarray, shapes: Sequence[Tuple[int, ...]], integer: bool,
             lo: float = -np.inf, hi: float = np.inf) -> np.ndarray:
    """A real numeric array of one of ``shapes``, finite, optionally integer-valued and in [lo, hi]."""
    want = " or ".join(str(s) for s in shapes)
    what = f"a real {'integer-valued ' if integer else ''}array of shape {want}"
    if np.isfinite(lo) or np.isfinite(hi):
        what += f" with values in [{lo:g}, {hi:g}]"
    if a.dtype.kind not in "iuf":
        raise w.fail(key, f"has dtype {a.dtype}", what)
    if a.shape not in [tuple(s) for s in shapes]:
        raise w.fail(key, f"has shape {a.shape}", what)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise w.fail(key, f"holds {int((~np.isfinite(a)).sum())} NaN/inf value(s)", what)
    if integer and a.dtype.kind == "f" and (a != np.round(a)).any():
        bad = a[a != np.round(a)].reshape(-1)[0]
        raise w.fail(key, f"holds non-integer value(s), e.g. {bad:g}", what)
    if a.size and (a.min() < lo or a.max() > hi):
        raise w.fail(key, f"has values in [{a.min():g}, {a.max():g}]", what)
    return a


STREAM_BYTES = 8 << 20          # large datasets are checked in slabs of at most this many bytes


def _stream_numbers(w: _Where, key: str, obj: Any, shapes: Sequence[Tuple[int, ...]], integer: bool,
                    lo: float = -np.inf, hi: float = np.inf) -> bool:
    """:func:`_numbers` for a dataset, read in slabs of at most :data:`STREAM_BYTES` along its first axis (the
    whole array is never in memory at once). Returns whether any value is non-zero."""
    if not isinstance(obj, h5py.Dataset):
        raise w.fail(key, "is a group", "a dataset")
    try:
        dtype, shape, size = obj.dtype, obj.shape, obj.size
    except Exception as exc:  # noqa: BLE001 - damaged header
        raise w.fail(key, f"is unreadable ({type(exc).__name__}: {exc})", "a readable dataset") from None
    if dtype.kind not in "iuf" or dtype.subdtype is not None or not shape or not size:
        a = _numbers(w, key, _read(w, obj, key), shapes, integer, lo, hi)      # small, odd or 0-d: as before
        return bool(a.any())
    want = " or ".join(str(s_) for s_ in shapes)
    what = f"a real {'integer-valued ' if integer else ''}array of shape {want}"
    if np.isfinite(lo) or np.isfinite(hi):
        what += f" with values in [{lo:g}, {hi:g}]"
    if shape not in [tuple(s_) for s_ in shapes]:
        raise w.fail(key, f"has shape {shape}", what)
    rows = max(1, STREAM_BYTES // max(1, dtype.itemsize * (size // shape[0])))
    nonfinite, nonint, vmin, vmax, nonzero = 0, None, np.inf, -np.inf, False
    for i in range(0, shape[0], rows):
        try:
            a = np.asarray(obj[i:i + rows])
        except Exception as exc:  # noqa: BLE001 - damaged chunk
            raise w.fail(key, f"is unreadable ({type(exc).__name__}: {exc})", "a readable dataset") from None
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a)
            if bad.any():
                nonfinite += int(bad.sum())
                continue
            if integer and nonint is None and (a != np.round(a)).any():
                nonint = float(a[a != np.round(a)].reshape(-1)[0])
        vmin, vmax = min(vmin, float(a.min())), max(vmax, float(a.max()))
        nonzero = nonzero or bool(a.any())
    if nonfinite:
        raise w.fail(key, f"holds {nonfinite} NaN/inf value(s)", what)
    if nonint is not None:
        raise w.fail(key, f"holds non-integer value(s), e.g. {nonint:g}", what)
    if vmin < lo or vmax > hi:
        raise w.fail(key, f"has values in [{vmin:g}, {vmax:g}]", what)
    return nonzero


# ---------------------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------------------
def conv_out(n: int, k: int, s: int, p: int, d: int) -> int:
    """Lava ``conv.utils.output_shape`` along one axis (floor division)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _neuron(w: _Where, node: Any, neurons: NeuronRegistry) -> schema.NeuronType:
    """Check a layer's ``neuron`` group against its type's table in ``neurons``; returns that table."""
    if not isinstance(node, h5py.Group):
        raise w.fail(K.NEURON, "is a dataset", "a group holding the neuron parameters")
    items = _children(w, node, K.NEURON)
    type_key = f"{K.NEURON}/{schema.NEURON_TYPE_KEY}"
    if schema.NEURON_TYPE_KEY not in items:
        raise w.fail(type_key, "is missing", f"one of {list(neurons)}")
    ntype = _text(w, _read(w, items[schema.NEURON_TYPE_KEY], type_key), type_key, f"one of {list(neurons)}")
    if ntype not in neurons:
        hint = (" (RF neurons need complex synapses, which netx cannot load)"
                if schema.COMPLEX_NEURON_HINT in ntype else "")
        raise w.fail(type_key, f"= {ntype!r} is not a neuron type ILIFNetwork can build{hint}",
                     f"one of {list(neurons)}")
    table = neurons[ntype]
    for k in table.keys:
        name = f"{K.NEURON}/{k.name}"
        if k.name in items:
            _check(w, name, _read(w, items[k.name], name), k.rule)
        elif k.required:
            raise w.fail(name, f"is missing (required for {ntype} neurons)", schema.expected(k.rule))
    return table


def _layer(w: _Where, g: h5py.Group, idx: int, n_layers: int, prev: Optional[Tuple[int, ...]],
           prev_block: bool, after_flatten: bool, neurons: NeuronRegistry) -> Tuple[str, Tuple[int, ...], bool]:
    """Check one layer given the previous output shape (CHW or (F,), None if unknown).

    Returns (type, output shape, whether the layer becomes a Lava block)."""
    items = _children(w, g, None)
    types = list(schema.BUILT_LAYER_TYPES)
    if K.TYPE not in items:
        raise w.fail(K.TYPE, "is missing", f"one of {types}")
    ltype = _text(w, _read(w, items[K.TYPE], K.TYPE), K.TYPE, f"one of {types}")
    if ltype not in types:
        cls = UnsupportedLayerError if ltype in schema.REFUSED_LAYER_TYPES else NetworkFileError
        raise w.fail(K.TYPE, f"= {ltype!r} is not a layer type netx builds", f"one of {types}", cls)
    if after_flatten and ltype != "dense":
        raise w.fail(K.TYPE, f"= {ltype!r} follows a flatten layer", "'dense' after 'flatten'")
    table = LAYER_TYPES[ltype]
    for key in table.required:
        if key not in items:
            raise w.fail(key, f"is missing (required for '{ltype}' layers)", "it to be present")
    vals: Dict[str, Any] = {k: _check(w, k, _read(w, items[k], k), rule)
                            for k, rule in schema.layer_key_rules().items() if k in items}
    shape = vals[K.SHAPE]
    cap = min(MAX_NEURONS, current_limits().max_neurons_per_layer)
    if int(np.prod(shape)) > cap:
        raise w.fail(K.SHAPE, f"= {list(shape)} holds {int(np.prod(shape))} neurons", f"at most {cap} per layer")
    neuron = (_neuron(w, items[K.NEURON], neurons)
              if table.key(K.NEURON) is not None and K.NEURON in items else None)

    if ltype == T.INPUT:
        if idx != 0:
            raise w.fail(K.TYPE, "= 'input' is not the first layer", "'input' only as layer 0")
        for key in (K.WEIGHT, K.BIAS):                      # netx: int(layer['weight']) / int(layer['bias'])
            if key in items and neuron is not None:
                _numbers(w, key, _read(w, items[key], key), [(), (1,)], integer=False)   # slayer writes (1,)
        return ltype, shape, neuron is not None

    if ltype == T.FLATTEN:
        if prev is not None and int(np.prod(prev)) != int(np.prod(shape)):
            raise w.fail(K.SHAPE, f"= {list(shape)} ({int(np.prod(shape))} values) does not match the previous "
                         f"layer's output {list(prev)}", f"{int(np.prod(prev))} values")
        if prev_block and len(prev) != 3:
            raise w.fail(K.TYPE, f"= 'flatten' follows a layer of shape {list(prev)}",
                         "a 3-D (C, H, W) previous layer")
        if idx == n_layers - 1:
            raise w.fail(K.TYPE, "= 'flatten' is the last layer", "a dense layer after it")
        return ltype, (int(np.prod(shape)),), False

    if ltype == T.DENSE:
        n_in, n_out = vals[K.IN_FEATURES], vals[K.OUT_FEATURES]
        if int(np.prod(shape)) != n_out:
            raise w.fail(K.SHAPE, f"= {list(shape)} does not match {K.OUT_FEATURES} = {n_out}", f"[{n_out}]")
        if prev is not None and int(np.prod(prev)) != n_in:
            raise w.fail(K.IN_FEATURES, f"= {n_in} does not match the previous layer's output {list(prev)}",
                         f"{int(np.prod(prev))}")
        if prev_block and not after_flatten and len(prev) != 1:
            raise w.fail(K.TYPE, f"= 'dense' follows a layer of shape {list(prev)} without a flatten layer",
                         "a 'flatten' layer in between")
        wshape = (n_out, n_in)
        n_per_out = n_out
    else:  # conv
        c_in, c_out, groups = vals[K.IN_CHANNELS], vals[K.OUT_CHANNELS], vals[K.GROUPS]
        k, s, p, d = (vals[x] for x in (K.KERNEL_SIZE, K.STRIDE, K.PADDING, K.DILATION))
        if c_in % groups or c_out % groups:
            raise w.fail(K.GROUPS, f"= {groups} does not divide {K.IN_CHANNELS} = {c_in} and {K.OUT_CHANNELS} = {c_out}",
                         "a common divisor")
        if len(shape) != 3 or shape[0] != c_out:
            raise w.fail(K.SHAPE, f"= {list(shape)} does not match {K.OUT_CHANNELS} = {c_out}",
                         f"[{c_out}, H, W]")
        if prev is not None:
            if len(prev) != 3:
                raise w.fail(K.TYPE, f"= 'conv' follows a layer of shape {list(prev)}", "a 3-D (C, H, W) input")
            if prev[0] != c_in:
                raise w.fail(K.IN_CHANNELS, f"= {c_in} does not match the previous layer's {prev[0]} channels",
                             f"{prev[0]}")
            out_hw = tuple(conv_out(prev[1 + a], k[a], s[a], p[a], d[a]) for a in (0, 1))
            if shape[1:] != out_hw:
                raise w.fail(K.SHAPE, f"= {list(shape)} does not match the convolution of the previous "
                             f"output {list(prev)} (kernel {list(k)}, stride {list(s)}, padding {list(p)}, "
                             f"dilation {list(d)})", f"{[c_out, *out_hw]}")
        wshape = (c_out, c_in // groups) + tuple(k)
        n_per_out = c_out
    rule = table.key(K.WEIGHT).rule
    nonzero = _stream_numbers(w, K.WEIGHT, items[K.WEIGHT], [wshape], integer=rule.integer, lo=rule.lo, hi=rule.hi)
    if ltype == T.DENSE and not nonzero:       # netx's optimize_weight_bits divides by the largest weight
        raise w.fail(K.WEIGHT, "is all zero (netx cannot scale an all-zero dense weight matrix)",
                     "at least one non-zero weight")
    for key in (K.DELAY, K.BIAS):
        if key in items:
            rule = table.key(key).rule
            vals[key] = _numbers(w, key, _read(w, items[key], key), [(n_per_out,)], integer=rule.integer,
                                 lo=rule.lo, hi=rule.hi)
    if K.BIAS in items and neuron is not None and not neuron.has_bias and vals[K.BIAS].any():
        raise w.fail(K.BIAS, f"is non-zero for an {neuron.name} layer (the {neuron.name} process has no bias)",
                     "all zeros")
    return ltype, shape, True


def open_checked(path: PathLike) -> h5py.File:
    """``h5py.File(path, 'r')`` after :func:`check_regular_file`; any h5py failure is a :class:`NetworkFileError`."""
    path = check_regular_file(path)
    try:
        return h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - OSError for non-HDF5 / truncated files, others for odd ones
        raise NetworkFileError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())})") from None


def check_container(path: PathLike, limits: Optional[FileLimits] = None, big_keys: Sequence[str] = BIG_KEYS,
                    max_vlen: int = 16) -> Path:
    """The container checks of :func:`validate_file` for any HDF5 file read from others (e.g. NIR graphs,
    :mod:`ilif_lava.nir`), without the netx layer rules: a regular file, readable as HDF5, every link and dataset
    checked from metadata by :func:`_walk` (``big_keys``, ``max_vlen`` as there) and every contiguous
    variable-length dataset's global heap walked before h5py parses it. Raises :class:`NetworkFileError`."""
    path = Path(path)
    with open_checked(path) as h:
        _walk(path, h, limits or current_limits(), big_keys=big_keys, max_vlen=max_vlen, heaps=True)
    return path


def validate_file(path: PathLike, input_shape: Optional[Sequence[int]] = None,
                  limits: Optional[FileLimits] = None, neurons: Optional[NeuronRegistry] = None) -> None:
    """Raise :class:`NetworkFileError` unless ``path`` is a netx HDF5 network that ILIFNetwork can build.

    ``input_shape`` (optional, netx's (x, y, f) order, as ``hdf5.Network(input_shape=...)``) is the network
    input when layer 0 is not an ``input`` layer; it lets the first layer's sizes be checked too.
    ``limits`` (default: :func:`current_limits`, i.e. :data:`DEFAULT_LIMITS` unless :func:`use_limits` is active)
    bounds layers, neurons, synapses and bytes; the file is opened only if it is a regular file, and every link
    and dataset is checked from metadata (:func:`_walk`) before any value is read. ``neurons``: the neuron types
    accepted (default: the built-in tables, :data:`ilif_lava.netx_schema.NEURON_TYPES`).
    """
    limits = limits or current_limits()
    with use_limits(limits):
        _validate(Path(path), input_shape, limits, NEURON_TYPES if neurons is None else neurons)


def _validate(path: Path, input_shape: Optional[Sequence[int]], limits: FileLimits,
              neuron_types: NeuronRegistry) -> None:
    top = _Where(path)
    with open_checked(path) as h:
        _walk(path, h, limits)
        root = _children(top, h, "/")
        if K.LAYER not in root:
            raise top.fail(K.LAYER, "is missing", f"a top-level group '{K.LAYER}'")
        if not isinstance(root[K.LAYER], h5py.Group):
            raise top.fail(K.LAYER, "is a dataset", f"a top-level group '{K.LAYER}'")
        try:                                      # counted before any layer object is opened
            n_layers = len(root[K.LAYER])
        except Exception as exc:  # noqa: BLE001 - any h5py failure on a damaged file
            raise top.fail(K.LAYER, f"is unreadable ({type(exc).__name__}: {exc})", "a readable HDF5 group") from None
        if n_layers > limits.max_layers:
            raise top.fail(K.LAYER, f"has {n_layers} layers", f"at most {limits.max_layers}")
        layers = _children(top, root[K.LAYER], K.LAYER)
        names = [str(i) for i in range(len(layers))]
        if not layers or sorted(layers) != sorted(names):
            extra = sorted(set(layers) - set(names))
            raise top.fail(K.LAYER, f"has children {sorted(layers)}" + (f" ({extra} unexpected)" if extra else ""),
                           "layers numbered '0' .. 'N-1' (at least one)")
        prev: Optional[Tuple[int, ...]] = None
        if input_shape is not None:
            prev = tuple(int(v) for v in tuple(input_shape)[::-1])      # (x, y, f) -> (C, H, W)
        prev_block = after_flatten = False
        n_blocks = n_neurons = n_synapses = 0
        for i, name in enumerate(names):
            w = _Where(path, i)
            if not isinstance(layers[name], h5py.Group):
                raise w.fail(None, "is a dataset", "a group")
            ltype, prev, block = _layer(w, layers[name], i, len(names), prev, prev_block, after_flatten,
                                        neuron_types)
            after_flatten = ltype == T.FLATTEN
            prev_block = prev_block or block
            n_blocks += int(block)
            if ltype == T.FLATTEN:
                continue
            neurons = int(np.prod(prev))
            n_neurons += neurons
            if n_neurons > limits.max_neurons:
                raise w.fail(K.SHAPE, f"brings the network to {n_neurons} neurons",
                             f"at most {limits.max_neurons} in total")
            if ltype in (T.DENSE, T.CONV):
                wshape = layers[name][K.WEIGHT].shape                      # checked by _layer
                fan_in = int(np.prod(wshape[1:]))
                n_synapses += fan_in * neurons
                if n_synapses > limits.max_synapses:
                    raise w.fail(K.WEIGHT, f"brings the network to {n_synapses} synapses (fan-in x neurons)",
                                 f"at most {limits.max_synapses} in total")
        if n_blocks == 0:
            raise top.fail(K.LAYER, "has no dense, conv or input-with-neuron layer",
                           "at least one layer that builds a Lava block")
