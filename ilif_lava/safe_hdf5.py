"""Opening HDF5 files that come from others, and reading them within bounds; used by every HDF5 reader.

The netx validator (:mod:`ilif_lava.hdf5_validate`), the Loihi 2 check (:mod:`ilif_lava.loihi2`) and the NIR reader
(:mod:`ilif_lava.nir.files`) open files through here:

* :func:`check_regular_file` / :func:`open_checked`: ``stat`` before ``open`` (regular files only: a FIFO or a
  device is never opened); any h5py failure becomes one :class:`NetworkFileError` line naming the file;
* :func:`walk`: every link and dataset checked from metadata before a value is read (links examined without
  being followed: external links refused, soft links only inside the file; external storage, virtual datasets
  and filters other than HDF5's built-in ones refused; byte, link and depth limits of a
  :class:`~ilif_lava.file_limits.FileLimits`); with ``heaps`` the global heaps of variable-length data are walked
  first (:func:`global_heap_problem`);
* :func:`read` (one small dataset, bounded) and :func:`slabs` (a large one in slabs of at most
  :data:`STREAM_BYTES`, never whole in memory); strings are decoded by :func:`ilif_lava.netx_schema.text`.
"""
from __future__ import annotations

import os
import stat as _stat
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import h5py
import numpy as np

from ilif_lava.file_limits import FileLimits, current_limits
from ilif_lava.safe_read import file_kind
from ilif_lava.errors import IlifLavaError

PathLike = Union[str, Path]

MAX_ELEMENTS = 1 << 26              # per dataset: read nothing larger (a corrupted header can claim huge dims)
STREAM_BYTES = 8 << 20              # large datasets are read in slabs of at most this many bytes
# HDF5's built-in filters (gzip, shuffle, fletcher32, szip) and h5py's LZF; anything else (a user-defined or
# dynamically loaded filter plugin) is refused before HDF5 could load code to decode it
ALLOWED_FILTERS = {h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle",
                   h5py.h5z.FILTER_FLETCHER32: "fletcher32", h5py.h5z.FILTER_SZIP: "szip",
                   h5py.h5z.FILTER_LZF: "lzf"}


class NetworkFileError(IlifLavaError, ValueError):
    """An HDF5 file (a netx network, a NIR graph) is unusable. The message names the file (and the layer and key
    where there is one)."""


class Where:
    """File + layer context of one-line messages: ``PATH: layer I: key 'K' PROBLEM; expected WHAT``."""

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


def children(w: Where, g: h5py.Group, key: Optional[str]) -> Dict[str, Any]:
    """{name: Group or Dataset} of a group (names must be text)."""
    try:
        out = {name: g[name] for name in g.keys()}
    except Exception as exc:  # noqa: BLE001 - any h5py failure on a damaged file
        raise w.fail(key, f"is unreadable ({type(exc).__name__}: {exc})", "a readable HDF5 group") from None
    odd = [name for name in out if not isinstance(name, str)]        # h5py returns undecodable names as bytes
    if odd:
        raise w.fail(key, f"has a child named {odd[0]!r}, which is not UTF-8 text", "text names")
    return out


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
        raise NetworkFileError(f"{path}: is {file_kind(st.st_mode)}, expected a regular HDF5 file")
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


def walk(path: Path, h: h5py.File, limits: FileLimits, big_keys: Sequence[str] = (),
          max_vlen: int = 16, heaps: bool = False) -> None:
    """Check every link and dataset of the file from metadata, before any data is read.

    Refused: external links, soft links that leave the file (through an external link), dangle or loop,
    datasets with external storage, virtual datasets, filters outside :data:`ALLOWED_FILTERS`, datasets over
    the byte limits (``dtype.itemsize * size``, so long strings and array-typed dtypes count in full), more than
    ``limits.max_links`` links or nesting deeper than ``limits.max_depth``. Links are examined with
    ``getlink=True`` so that nothing is followed. Datasets named in ``big_keys`` may hold up to
    ``limits.max_dataset_bytes``, others ``limits.max_key_bytes``; variable-length ones at most ``max_vlen``
    values, and with ``heaps`` their global heaps are walked too (:func:`global_heap_problem`).
    """
    top = Where(path)
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
                        problem, expected = global_heap_problem(path, obj), "a readable dataset"
                except Exception as exc:  # noqa: BLE001 - damaged dataset header
                    raise top.fail(full, f"is unreadable ({type(exc).__name__}: {exc})",
                                   "a readable dataset") from None
                if problem:
                    raise top.fail(full, problem, expected)
                total += nbytes
                if total > limits.max_total_bytes:
                    raise top.fail(full, f"brings the datasets to {total} bytes",
                                   f"at most {limits.max_total_bytes} bytes in total")


def global_heap_problem(path: Path, ds: h5py.Dataset) -> Optional[str]:
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


def read(w: Where, obj: Any, key: str) -> np.ndarray:
    """The value of a dataset as a numpy array (0-d for scalars)."""
    if not isinstance(obj, h5py.Dataset):
        raise w.fail(key, "is a group", "a dataset")
    try:
        if obj.size is not None and obj.size > MAX_ELEMENTS:
            raise w.fail(key, f"claims {obj.size} elements", f"at most {MAX_ELEMENTS}")
        problem = global_heap_problem(w.path, obj)
        if problem:
            raise w.fail(key, problem, "a readable dataset")
        return np.asarray(obj[()])
    except NetworkFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any h5py failure on a damaged file
        raise w.fail(key, f"is unreadable ({type(exc).__name__}: {exc})", "a readable dataset") from None


def slabs(ds: h5py.Dataset, w: Optional[Where] = None, key: Optional[str] = None) -> Iterator[np.ndarray]:
    """The values of a dataset with at least one axis, in slabs of at most :data:`STREAM_BYTES` bytes along its
    first axis (the whole array is never in memory at once). With ``w``, a failing read is a
    :class:`NetworkFileError` naming ``key``."""
    per_row = max(1, ds.dtype.itemsize * (ds.size // ds.shape[0])) if ds.shape and ds.shape[0] else 1
    rows = max(1, STREAM_BYTES // per_row)
    for i in range(0, ds.shape[0], rows):
        try:
            a = np.asarray(ds[i:i + rows])
        except Exception as exc:  # noqa: BLE001 - damaged chunk
            if w is None:
                raise
            raise w.fail(key, f"is unreadable ({type(exc).__name__}: {exc})", "a readable dataset") from None
        yield a


def open_checked(path: PathLike) -> h5py.File:
    """``h5py.File(path, 'r')`` after :func:`check_regular_file`; any h5py failure is a :class:`NetworkFileError`."""
    path = check_regular_file(path)
    try:
        return h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - OSError for non-HDF5 / truncated files, others for odd ones
        raise NetworkFileError(f"{path}: not a readable HDF5 file ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())})") from None


def check_container(path: PathLike, limits: Optional[FileLimits] = None, big_keys: Sequence[str] = (),
                    max_vlen: int = 16) -> Path:
    """The container checks alone, for any HDF5 file read from others (NIR graphs, :mod:`ilif_lava.nir`): a regular
    file, readable as HDF5, every link and dataset checked from metadata by :func:`walk` (``big_keys``,
    ``max_vlen`` as there; ``limits``: default :func:`~ilif_lava.file_limits.current_limits`) and every contiguous
    variable-length dataset's global heap walked before h5py parses it. Raises :class:`NetworkFileError`."""
    path = Path(path)
    with open_checked(path) as h:
        walk(path, h, limits or current_limits(), big_keys=big_keys, max_vlen=max_vlen, heaps=True)
    return path
