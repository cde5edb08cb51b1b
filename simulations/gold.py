"""Gold-vector packs: a deployed network, its input and every layer's integer spikes (and states of a few
samples), in the layout of lava-dl's ``gts/`` folders, plus a pytest file that replays them in Lava.

A user takes the folder to a Loihi 2 system (or a newer Lava) and learns at once whether anything changed.

Pack layout (one folder):

  network.net          the netx HDF5 file, byte for byte
  input.npy            input spikes [N, C, H, W, T] (or [N, F, T]), the smallest signed integer dtype that holds them
  layer-<i>.npy        spikes of layer i, [N, neurons, T] int8 (neurons in slayer's C, H, W order)
  layer-<i>-<s>.npy    state s (u, v, c, m) of ILIF layer i for the first K samples, [K, neurons, T] int64, exactly
                       as :func:`simulations.lava_run.run_network` records them (read after each Lava step)
  manifest.json        format, sizes, shapes, dtypes and the SHA-256 of every file above, the data record
  test_gold.py         pytest file: verifies the files, rebuilds the network with ``ILIFNetwork`` and checks that
                       Lava reproduces every layer's spikes and the states

Reading a pack treats it as untrusted: the manifest is bounded, every file is a regular file inside the pack (no
link out), its size and SHA-256 are checked against the manifest before it is parsed, and ``.npy`` headers are
checked against the file size before any array is allocated.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ilif_lava import atomic
from ilif_lava import fixed_point as fx
from ilif_lava.safe_read import open_regular, read_regular
from ilif_lava.errors import IlifLavaError

FORMAT = "ilif-lava-gold/1"
NETWORK = "network.net"
INPUT = "input.npy"
MANIFEST = "manifest.json"
TEST_FILE = "test_gold.py"
MAX_MANIFEST_BYTES = 1 << 20             # 1 MiB: a manifest lists a few hundred files at most
MAX_FILE_BYTES = 1 << 30                 # 1 GiB per array or network file
STATE_KEYS = fx.STATE_NAMES               # u, v, c (CIU), m (MPIU)


class GoldPackError(IlifLavaError, ValueError):
    """A pack that cannot be read or verified; the message is one line naming the file (and layer or key)."""


def layer_file(layer: int) -> str:
    """File name of layer ``layer``'s spikes (lava-dl gts style: one ``.npy`` per layer)."""
    return f"layer-{int(layer)}.npy"


def state_file(layer: int, name: str) -> str:
    """File name of state ``name`` of layer ``layer`` (lava-dl gts style: ``<layer>-<state>.npy``)."""
    return f"layer-{int(layer)}-{name}.npy"


def sha256_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """SHA-256 (hex) of a regular file of at most ``max_bytes`` bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open_regular(path, max_bytes, GoldPackError, "a gold-pack file", allow_empty=True) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _int_dtype(a: np.ndarray) -> np.dtype:
    """The smallest signed integer dtype holding every value of the integral array ``a``."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in (np.int8, np.int16, np.int32, np.int64):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"values {lo}..{hi} do not fit int64")


def _entry(folder: Path, name: str, array: Optional[np.ndarray] = None) -> Dict[str, Any]:
    path = folder / name
    out: Dict[str, Any] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if array is not None:
        out.update(shape=[int(v) for v in array.shape], dtype=str(array.dtype))
    return out


# ---------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------
def write_pack(out: Path, net_path: Path, x: np.ndarray, spikes: Sequence[np.ndarray],
               states: Optional[Dict[int, Dict[str, np.ndarray]]] = None,
               data: Optional[Dict[str, Any]] = None) -> Path:
    """Write a gold pack into the folder ``out`` (created; files replaced atomically) and return it.

    ``x``: input spikes [N, C, H, W, T] or [N, F, T] (integers); ``spikes``: per layer [N, neurons, T] (the
    deployed network's integer spikes for exactly ``x``); ``states``: layer -> state name -> [K, neurons, T]
    (K <= N, the first K samples, recorded as ``run_network(record_states=True)`` records them); ``data``: a
    JSON-able record of which data ``x`` is (e.g. ``data.json`` of ``ilif-lava simulate``).
    """
    out = Path(out)
    x = np.asarray(x)
    if not x.size or not np.array_equal(x, np.rint(x)):
        raise ValueError(f"{out}: the input must be non-empty integer spikes")
    n, steps = int(x.shape[0]), int(x.shape[-1])
    for i, s in enumerate(spikes):
        if s.ndim != 3 or s.shape[0] != n or s.shape[-1] != steps:
            raise ValueError(f"{out}: layer {i} spikes have shape {list(s.shape)}, expected [{n}, neurons, {steps}]")
    out.mkdir(parents=True, exist_ok=True)
    atomic.check_outputs([out / NETWORK], [("network", net_path)])
    with atomic.atomic_path(out / NETWORK) as tmp:
        shutil.copyfile(net_path, tmp)
    xi = x.astype(_int_dtype(x))
    atomic.save_npy(out / INPUT, xi)
    files: Dict[str, Any] = {NETWORK: _entry(out, NETWORK), INPUT: _entry(out, INPUT, xi)}
    layers = []
    for i, s in enumerate(spikes):
        arr = np.ascontiguousarray(s, dtype=np.int8)
        atomic.save_npy(out / layer_file(i), arr)
        files[layer_file(i)] = _entry(out, layer_file(i), arr)
        layers.append({"layer": i, "neurons": int(arr.shape[1]), "spikes": int(arr.sum()),
                       "file": layer_file(i), "states": []})
    state_samples = 0
    for i, per in sorted((states or {}).items()):
        for name in STATE_KEYS:
            if name not in per:
                continue
            arr = np.ascontiguousarray(per[name], dtype=np.int64)
            state_samples = int(arr.shape[0])
            atomic.save_npy(out / state_file(i, name), arr)
            files[state_file(i, name)] = _entry(out, state_file(i, name), arr)
            layers[i]["states"].append(name)
    manifest = {"format": FORMAT, "samples": n, "steps": steps, "state_samples": state_samples,
                "input_shape": [int(v) for v in x.shape[1:-1]], "layers": layers, "data": data or {},
                "files": files}
    atomic.write_text(out / TEST_FILE, TEST_TEMPLATE)
    atomic.write_json(out / MANIFEST, manifest, indent=1)
    return out


# ---------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------
@dataclass
class GoldPack:
    """A verified pack: the network file, the input [N, ..., T], spikes per layer [N, neurons, T] and the states
    layer -> name -> [K, neurons, T]."""

    folder: Path
    network: Path
    x: np.ndarray
    spikes: List[np.ndarray]
    states: Dict[int, Dict[str, np.ndarray]] = field(default_factory=dict)
    manifest: Dict[str, Any] = field(default_factory=dict)


def _read_manifest(folder: Path) -> Dict[str, Any]:
    path = atomic.check_input(folder / MANIFEST, folder, "the gold manifest")
    raw = read_regular(path, MAX_MANIFEST_BYTES, GoldPackError, "a gold manifest")
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise GoldPackError(f"{path}: not JSON ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise GoldPackError(f"{path}: key 'format' is {m.get('format') if isinstance(m, dict) else None!r}, "
                            f"expected {FORMAT!r}")
    for key, kind in (("files", dict), ("layers", list), ("samples", int), ("steps", int)):
        if not isinstance(m.get(key), kind):
            raise GoldPackError(f"{path}: key {key!r} is missing or not a {kind.__name__}")
    return m


def _checked(folder: Path, manifest: Dict[str, Any], name: str) -> Path:
    """``folder/name`` after the checks: listed, a plain name, no link out, size and SHA-256 as listed."""
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise GoldPackError(f"{folder / MANIFEST}: file {name!r} is not listed with its sha256")
    if Path(name).name != name or name in (".", ".."):
        raise GoldPackError(f"{folder / MANIFEST}: file name {name!r} is not a plain file name")
    path = atomic.check_input(folder / name, folder, "a gold-pack file")
    if os.path.islink(path):
        raise GoldPackError(f"{path}: is a symbolic link; a gold pack holds plain files")
    got = sha256_file(path)
    if got != entry["sha256"]:
        raise GoldPackError(f"{path}: SHA-256 {got[:16]}... differs from the manifest's {entry['sha256'][:16]}... "
                            f"(the file changed since the pack was written)")
    return path


def read_npy(path: Path, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """A ``.npy`` array (C or Fortran order, returned C-contiguous) of a plain numeric dtype whose header matches the file size exactly (checked before the
    data are read, so a forged shape cannot make this allocate more than the file holds)."""
    with open_regular(path, max_bytes, GoldPackError, "a .npy array") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = reader(fh)
        except (ValueError, OSError, SyntaxError, TypeError) as exc:
            raise GoldPackError(f"{path}: not a .npy array ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise GoldPackError(f"{path}: dtype {dtype} is not a plain numeric dtype")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        left = os.fstat(fh.fileno()).st_size - fh.tell()
        if count * dtype.itemsize != left:
            raise GoldPackError(f"{path}: header says {list(shape)} {dtype} ({count * dtype.itemsize} bytes), the "
                                f"file holds {left}")
        data = fh.read(left)
    return np.ascontiguousarray(np.frombuffer(data, dtype=dtype, count=count).reshape(shape,
                                                                                       order="F" if fortran else "C"))


def load_pack(folder: Path) -> GoldPack:
    """Read and verify a pack (module docstring); raises :class:`GoldPackError` naming the file on any problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GoldPackError(f"{folder}: is not a gold-pack folder")
    m = _read_manifest(folder)
    n, steps = m["samples"], m["steps"]
    network = _checked(folder, m, NETWORK)
    x = read_npy(_checked(folder, m, INPUT))
    if x.ndim < 3 or x.shape[0] != n or x.shape[-1] != steps:
        raise GoldPackError(f"{folder / INPUT}: shape {list(x.shape)}, expected [{n}, ..., {steps}]")
    spikes: List[np.ndarray] = []
    states: Dict[int, Dict[str, np.ndarray]] = {}
    for i, row in enumerate(m["layers"]):
        s = read_npy(_checked(folder, m, layer_file(i)))
        if s.ndim != 3 or s.shape[0] != n or s.shape[-1] != steps:
            raise GoldPackError(f"{folder / layer_file(i)}: layer {i} shape {list(s.shape)}, expected "
                                f"[{n}, neurons, {steps}]")
        spikes.append(s)
        names = row.get("states", []) if isinstance(row, dict) else []
        for name in names:
            if name not in STATE_KEYS:
                raise GoldPackError(f"{folder / MANIFEST}: layer {i} lists unknown state {name!r}")
            a = read_npy(_checked(folder, m, state_file(i, name)))
            if a.ndim != 3 or a.shape[0] > n or a.shape[1:] != s.shape[1:]:
                raise GoldPackError(f"{folder / state_file(i, name)}: layer {i} state {name} shape "
                                    f"{list(a.shape)} does not match the spikes {list(s.shape)}")
            states.setdefault(i, {})[name] = a
    return GoldPack(folder=folder, network=network, x=x, spikes=spikes, states=states, manifest=m)


# ---------------------------------------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Replay:
    """Lava's spikes per layer [N, neurons, T] and states of the first K samples for a pack's input."""

    spikes: List[np.ndarray]
    states: Dict[int, Dict[str, np.ndarray]]


def replay(pack: GoldPack, network: Optional[Path] = None) -> Replay:
    """Rebuild the pack's network (or ``network``) with ``ILIFNetwork`` and run the pack's input in Lava fixed_pt;
    states are recorded for as many samples as the pack holds states."""
    from simulations.lava_run import run_network
    net = Path(network) if network is not None else pack.network
    res = run_network(net, pack.x)
    k = int(pack.manifest.get("state_samples", 0) or 0) if pack.states else 0
    states = run_network(net, pack.x[:k], record_states=True).states if k else {}
    return Replay(spikes=res.spikes, states=states)


def differences(pack: GoldPack, got: Replay) -> List[str]:
    """One line per layer whose spikes (or recorded states) differ from the pack, naming the layer, the count
    and the first (sample, neuron, step); empty when Lava reproduced everything."""
    lines: List[str] = []
    if len(got.spikes) != len(pack.spikes):
        return [f"{pack.folder}: the network has {len(got.spikes)} layers, the pack {len(pack.spikes)}"]
    for i, (want, have) in enumerate(zip(pack.spikes, got.spikes)):
        if want.shape != have.shape:
            lines.append(f"{pack.folder / layer_file(i)}: layer {i} shape {list(have.shape)} from Lava, "
                         f"{list(want.shape)} in the pack")
            continue
        line = _first_difference(want, have, f"{pack.folder / layer_file(i)}: layer {i} spikes")
        if line:
            lines.append(line)
    for i, per in sorted(pack.states.items()):
        for name, want in per.items():
            have = got.states.get(i, {}).get(name)
            label = f"{pack.folder / state_file(i, name)}: layer {i} state {name}"
            if have is None or have.shape != want.shape:
                lines.append(f"{label}: not reproduced (Lava recorded "
                             f"{None if have is None else list(have.shape)}, the pack {list(want.shape)})")
                continue
            line = _first_difference(want, have, label)
            if line:
                lines.append(line)
    return lines


def _first_difference(want: np.ndarray, have: np.ndarray, label: str) -> Optional[str]:
    diff = np.asarray(want) != np.asarray(have)
    if not diff.any():
        return None
    t_first = int(np.nonzero(diff.any(axis=(0, 1)))[0][0])
    n, j = (int(v[0]) for v in np.nonzero(diff[..., t_first]))
    return (f"{label}: {int(diff.sum())} values differ; first at step {t_first}, sample {n}, neuron {j} "
            f"(pack {want[n, j, t_first]}, Lava {have[n, j, t_first]})")


def check_pack(folder: Path) -> Tuple[GoldPack, List[str]]:
    """Verify and replay a pack: (the pack, the difference lines; empty when Lava reproduced it exactly)."""
    pack = load_pack(folder)
    return pack, differences(pack, replay(pack))


# The pytest file written into every pack. It needs ilif_lava and this repository's simulations package on the
# Python path (``ilif-lava gold --check`` runs it so).
TEST_TEMPLATE = '''"""Gold vectors of a deployed ILIF/CUBA network (written by `ilif-lava gold`).

Run: `ilif-lava gold --check RUN` (or `python -m pytest -q <this folder>/test_gold.py` with ilif-lava's
repository on PYTHONPATH). Verifies every file against manifest.json (SHA-256), rebuilds network.net with
ilif_lava's ILIFNetwork, runs input.npy in Lava fixed_pt and checks every layer's spikes (and the recorded states)
are reproduced exactly.
"""
import json
from pathlib import Path

import pytest

from simulations import gold

HERE = Path(__file__).resolve().parent
LAYERS = range(len(json.loads((HERE / gold.MANIFEST).read_text(encoding="utf-8"))["layers"]))


@pytest.fixture(scope="module")
def pack():
    return gold.load_pack(HERE)


@pytest.fixture(scope="module")
def lava(pack):
    return gold.replay(pack)


def test_files_match_manifest(pack):
    assert pack.spikes and pack.x.shape[0] == pack.manifest["samples"]


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_spikes_reproduced(pack, lava, layer):
    lines = [l for l in gold.differences(pack, lava) if f"layer {layer} spikes" in l or f"layer {layer} shape" in l]
    assert not lines, lines[0]


def test_states_reproduced(pack, lava):
    lines = [l for l in gold.differences(pack, lava) if " state " in l or "layers, the pack" in l]
    assert not lines, lines[0]
'''
