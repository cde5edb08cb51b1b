"""The netx file format has one home (``ilif_lava/netx_schema/``): its tables drive the writer, the loader, the
validator, the Loihi 2 check and the readers, and no netx key is spelled anywhere else in the code."""
from __future__ import annotations

import ast
import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import h5py
import numpy as np
import pytest

from ilif_lava import netx_schema as schema
from ilif_lava.netx_schema import LAYER_TYPES, NEURON_TYPES, K, Key

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("ilif_lava", "export", "simulations", "pipeline", "training")
SCHEMA_DIR = ROOT / "ilif_lava" / "netx_schema"
#: files that may spell key-like words: NIR graphs have their own fields ("weight", "bias", "shape", ...)
ALLOWED = {"ilif_lava/nir/convention.py", "ilif_lava/nir/export.py", "ilif_lava/nir/importer.py",
           "ilif_lava/nir/reference.py", "ilif_lava/nir/files.py"}


def _all_keys() -> List[str]:
    names = {k.name for t in LAYER_TYPES.values() for k in t.keys}
    names |= {k.name for t in NEURON_TYPES.values() for k in t.keys}
    return sorted(names | {K.LAYER, K.TYPE, K.NEURON})


def _strings(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    """String constants of a module except docstrings (line, text)."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def _imports_h5py(tree: ast.AST) -> bool:
    return any(isinstance(n, ast.Import) and any(a.name == "h5py" for a in n.names) for n in ast.walk(tree))


def _hdf5_uses(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    """String constants used as HDF5 access: ``X["k"][...]``, ``X["k"].attr``, ``"k" in X``, ``X.get("k")``,
    ``X.create_dataset("k", ...)`` / ``create_group`` / ``require_group``."""
    for node in ast.walk(tree):
        inner = None
        if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.value, ast.Subscript):
            inner = node.value.slice
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            inner = node.left
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
              and node.func.attr in ("get", "create_dataset", "create_group", "require_group", "require_dataset")):
            inner = node.args[0]
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            yield inner.lineno, inner.value


def stray_keys(files: List[Path]) -> List[str]:
    """'file:line: text' for every netx key spelled outside the schema: a netx camelCase key or a 'neuron/<key>' /
    'layer/<i>' path in any string; in a module that reads HDF5 (imports h5py), any key name used as an HDF5
    access (:func:`_hdf5_uses`). Docstrings are prose and are not checked."""
    keys = set(_all_keys())
    camel = {k for k in keys if re.search(r"[A-Z]", k)}
    word = re.compile(r"\b(" + "|".join(map(re.escape, sorted(camel, key=len, reverse=True))) + r")\b")
    path = re.compile(r"\b(neuron|layer)/(\w|$)")
    out = set()
    for f in files:
        rel = f.relative_to(ROOT).as_posix() if ROOT in f.parents else f.name
        if rel in ALLOWED:
            continue
        tree = ast.parse(f.read_text(), filename=rel)
        for line, s in _strings(tree):
            if word.search(s) or path.search(s):
                out.add((rel, line, s))
        if _imports_h5py(tree):
            out.update((rel, line, s) for line, s in _hdf5_uses(tree) if s in keys)
    return [f"{rel}:{line}: {s!r}" for rel, line, s in sorted(out)]


def _code_files() -> List[Path]:
    files = [p for d in CODE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    return [p for p in files if SCHEMA_DIR not in p.parents and ".venv" not in p.parts]


def test_no_netx_key_is_spelled_outside_the_schema():
    files = _code_files()
    assert len(files) > 30
    stray = stray_keys(files)
    assert not stray, "netx keys spelled outside ilif_lava/netx_schema (use netx_schema.K):\n" + "\n".join(stray)


def test_the_key_grep_finds_a_stray_key(tmp_path):
    """The check above can fail: a camelCase key, a neuron path, and a plain key in an HDF5 reader are found."""
    mod = tmp_path / "stray_probe.py"
    mod.write_text('"""Doc mentions vThMant (allowed)."""\nimport h5py\n\nA = "vThMant"\nB = f"neuron/{A}"\n'
                   'C = g["weight"][()]\nD = "refDelay is 1"\nE = "groups" in g\nF = report["shape"]\n')
    found = stray_keys([mod])
    assert [s.split(": ", 1)[1] for s in found] == ["'vThMant'", "'neuron/'", "'weight'", "'refDelay is 1'",
                                                    "'groups'"], found          # report["shape"]: a dict, not HDF5


def test_schema_is_plain_python_and_numpy():
    """Every layer can import the schema: it loads neither torch, Lava nor h5py."""
    code = ("import sys; import ilif_lava.netx_schema; "
            "bad = [m for m in ('torch', 'lava', 'h5py') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_one_rule_and_one_limit_per_key_name():
    rules, limits = {}, {}
    for t in [*LAYER_TYPES.values(), *NEURON_TYPES.values()]:
        for k in t.keys:
            if isinstance(t, schema.LayerType) and t.builds:
                assert rules.setdefault(k.name, k.rule) == k.rule or not isinstance(k.rule, schema.Int), (t.name, k)
            if k.loihi is not None:
                assert limits.setdefault(k.name, k.loihi) == k.loihi, (t.name, k.name)
    assert set(schema.layer_key_limits()) >= {K.WEIGHT, K.BIAS, K.DELAY}
    assert set(schema.neuron_key_limits()) == {K.I_DECAY, K.V_DECAY, K.C_DECAY, K.M_DECAY, K.VTH_MANT}


def test_fixed_point_computes_with_the_schema_widths():
    """The integer model (ilif_lava/fixed_point.py) and the file format agree on every word width."""
    from ilif_lava import fixed_point as fx
    from ilif_lava.netx_schema import rules
    assert (fx.DECAY_ONE, fx.VTH_MANT_MAX, fx.STATE_BITS) == (rules.DECAY_ONE, rules.VTH_MANT_MAX, rules.STATE_BITS)
    assert (fx.WEIGHT_MIN, fx.WEIGHT_MAX) == (rules.WEIGHT_MANT_MIN, rules.WEIGHT_MANT_MAX)
    assert tuple(fx.INHIBITIONS) == rules.INTEGER_INHIBITIONS


def test_writer_and_readers_follow_the_ilif_table():
    """device_params writes exactly the ILIF table's keys; the back-reader and the netx loader read them back."""
    from ilif_lava.lava_proc.process import ILIF
    from ilif_lava.netx import ilif_lava_params
    from ilif_lava.neuron import Neuron, neuron_params_from_device
    table = NEURON_TYPES[schema.ILIF_NEURON_TYPE]
    n = Neuron(tau=2.0, kappa=0.05, beta=0.9, threshold=1.5, current_decay=0.25, variant="MPIU")
    dp = n.device_params
    assert set(dp) == {schema.NEURON_TYPE_KEY} | {k.name for k in table.keys}
    as_h5 = {k: (np.bytes_(v) if isinstance(v, str) else np.asarray(v)[()]) for k, v in dp.items()}
    assert Neuron(**neuron_params_from_device(as_h5)).device_params == dp
    lava = ilif_lava_params(dp, neuron_proc=ILIF)
    assert lava["neuron_proc"] is ILIF and lava["bias_key"] == table.bias_param
    assert lava["vth"] == dp[K.VTH_MANT] and lava["mpiu"] is True and lava["ciu"] is False
    assert K.VARIANT not in lava and "variant" not in lava          # the float model's, not the process's
    with pytest.raises(TypeError, match="no key for parameter"):
        table.record(vth=1, threshold=2)


def test_text_decoder():
    assert schema.text(b"dense") == schema.text(np.array([b"dense"])) == schema.text(np.bytes_(b"dense")) == "dense"
    assert schema.text(np.array(b"plan", dtype=object)) == "plan"
    for bad, why in ((np.array([1, 2]), "is not a single string"), (b"\xff", "is not ASCII"),
                     ("\u00e9", "is not an ASCII string")):
        with pytest.raises(ValueError, match=why):
            schema.text(bad)
    assert schema.text(b"\xffx", strict=False).endswith("x")
    assert schema.decode(np.int64(3)) == 3 and type(schema.decode(np.int64(3))) is int
    assert isinstance(schema.decode(np.array([3])), np.ndarray)


@pytest.fixture(scope="module")
def ilif_file(tmp_path_factory) -> Path:
    from tests.test_hdf5_validate import base_files
    d = tmp_path_factory.mktemp("schema")
    path = d / "ilif.net"
    shutil.copy(base_files()["ilif_dense"].path, path)
    return path


def _renamed(src: Path, dst: Path, ntype: str) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h:
        for g in h[K.LAYER].values():
            del g[f"{K.NEURON}/{schema.NEURON_TYPE_KEY}"]
            g[f"{K.NEURON}/{schema.NEURON_TYPE_KEY}"] = ntype
    return dst


def test_validator_accepts_the_registry_it_is_given(ilif_file, tmp_path):
    """What hdf5_validate accepts does not depend on ilif_lava.netx: a registered type is accepted through netx's
    registry (what ILIFNetwork validates with) and refused by the default one, before and after registration."""
    from ilif_lava import hdf5_validate as hv
    from ilif_lava import netx
    mine = _renamed(ilif_file, tmp_path / "mine.net", "SCHEMATEST")
    with pytest.raises(hv.NetworkFileError, match="'SCHEMATEST' is not a neuron type"):
        hv.validate_file(mine)
    rules = {k.name: k.rule for k in NEURON_TYPES[schema.ILIF_NEURON_TYPE].keys if k.required}
    netx.register_neuron_type("SCHEMATEST", netx.neuron_params, keys=rules)     # (never called here)
    try:
        netx.validate_file(mine)
        hv.validate_file(mine, neurons=netx.neuron_registry())
        with pytest.raises(hv.NetworkFileError, match="'SCHEMATEST' is not a neuron type"):
            hv.validate_file(mine)                         # the default registry is not changed by registering
        assert "SCHEMATEST" not in NEURON_TYPES
    finally:
        netx.unregister_neuron_type("SCHEMATEST")
    with pytest.raises(hv.NetworkFileError, match="'SCHEMATEST' is not a neuron type"):
        netx.validate_file(mine)
    assert schema.ILIF_NEURON_TYPE in netx.neuron_registry()


def test_a_neuron_bias_is_one_table_edit(ilif_file, tmp_path):
    """A non-zero layer bias on ILIF neurons is refused by an ILIF table with has_bias=False and accepted by the same
    table with has_bias=True (what turning the ILIF bias on in netx files takes), and a new required key is
    enforced by adding one Key row."""
    from ilif_lava import hdf5_validate as hv
    biased = tmp_path / "bias.net"
    shutil.copy(ilif_file, biased)
    with h5py.File(biased, "r+") as h:
        n_out = h[f"{K.LAYER}/0/{K.OUT_FEATURES}"][()]
        h[f"{K.LAYER}/0"].create_dataset(K.BIAS, data=np.arange(int(n_out), dtype=np.float32))
    ilif = NEURON_TYPES[schema.ILIF_NEURON_TYPE]
    with pytest.raises(hv.NetworkFileError, match=r"layer 0: key 'bias' is non-zero for an ILIF layer"):
        hv.validate_file(biased, neurons=NEURON_TYPES.added(dataclasses.replace(ilif, has_bias=False)))
    hv.validate_file(biased, neurons=NEURON_TYPES.added(dataclasses.replace(ilif, has_bias=True)))
    if not ilif.has_bias:                                  # the built-in table today
        with pytest.raises(hv.NetworkFileError, match=r"is non-zero for an ILIF layer"):
            hv.validate_file(biased)
    extra = dataclasses.replace(ilif, keys=ilif.keys + (Key("schemaTestKey", schema.Int(0, 3), required=True),))
    with pytest.raises(hv.NetworkFileError, match=r"layer 0: key 'neuron/schemaTestKey' is missing"):
        hv.validate_file(ilif_file, neurons=NEURON_TYPES.added(extra))
