"""``pokerdvs`` (2, 35, 35), 4 classes (cl, he, di, sp = 0..3).

The archives ``pips_train.tar.gz`` (48 samples) / ``pips_test.tar.gz`` (20) in ``data_dir`` (default lookup:
``$ILIF_LAVA_DATA/pokerdvs``, ``<repo>/../shared/data/pokerdvs``, ``<cache_dir>/POKERDVS``). They are
symlinked (copied if symlinks fail) into ``<cache_dir>/POKERDVS/``, md5-checked and extracted there, then read
with ``tonic.datasets.POKERDVS(save_to=cache_dir)``. Nothing is written next to the source archives.
tonic 1.7.0 has no download for POKER-DVS (it only copies archives from its own package folder), so
``download=True`` cannot fetch it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from training.data_common import Request, SpikeDataset, default_dirs, not_found
from training.data_tonic import load_via_tonic

_POKER_ARCHIVES = {  # split -> (archive, md5 (the ones tonic 1.7.0 lists), extracted folder, sample count)
    "train": ("pips_train.tar.gz", "412bcfb96826e4fcb290558e8c150aae", "pips_train", 48),
    "test": ("pips_test.tar.gz", "eef2bf7d0d3defae89a6fa98b07c17af", "pips_test", 20),
}


def load(req: Request) -> SpikeDataset:
    """One split of ``pokerdvs``, spikes ``[N, 2, 35, 35, T]``, from the first folder holding its archive."""
    data_dir = req.data_dir
    candidates = [data_dir, data_dir / "POKERDVS"] if data_dir is not None else [*default_dirs("pokerdvs")]
    candidates.append(req.cache / "POKERDVS")
    archive = _POKER_ARCHIVES[req.split][0]
    for folder in candidates:
        if (folder / archive).is_file():
            return load_via_tonic(req, _prepare_pokerdvs(folder, req.cache, req.split), [])
    raise not_found(
        req.name,
        [c / archive for c in candidates],
        "pass --data-dir DIR pointing at a folder with pips_train.tar.gz and pips_test.tar.gz (md5 "
        f"{_POKER_ARCHIVES['train'][1]} / {_POKER_ARCHIVES['test'][1]}, e.g. github.com/cargonriv/dvs data/POKERDVS/) "
        "or set ILIF_LAVA_DATA to the folder holding pokerdvs/. --download cannot help here: tonic 1.7.0 has no "
        "download for POKERDVS",
    )


def _prepare_pokerdvs(source: Path, cache: Path, split: str) -> Path:
    """Link (or copy) the split's archive into ``<cache>/POKERDVS/``, check md5, extract once; return save_to."""
    archive, md5, folder_name, count = _POKER_ARCHIVES[split]
    target = cache / "POKERDVS"
    target.mkdir(parents=True, exist_ok=True)
    link = target / archive
    src = (source / archive).resolve()
    if src != link.resolve():
        if link.is_symlink() and not link.exists():  # dangling link from a moved source
            link.unlink()
        if not link.exists():
            _link_or_copy(src, link)
    found = _md5(link)
    if found != md5:
        raise ValueError(f"POKER-DVS archive {link} (-> {src}) has md5 {found}, expected {md5}")
    if not _is_extracted(target / folder_name, count):
        _extract(link, target, folder_name, count)
    return cache


def _is_extracted(folder: Path, count: int) -> bool:
    """True when ``folder`` holds at least ``count`` ``<class>/<k>.npy`` samples."""
    return len(list(folder.glob("*/*.npy"))) >= count


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst)
    except FileExistsError:
        pass  # another process won the race
    except OSError:
        shutil.copy2(src, dst)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _extract(archive: Path, target: Path, folder_name: str, count: int) -> None:
    """Extract ``archive`` into a temporary folder next to ``target / folder_name``, then rename it into place.

    The rename makes a half-extracted folder invisible to tonic; a complete folder that a concurrent process put
    in place meanwhile is kept, an incomplete one replaced.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        final = target / folder_name
        if _is_extracted(final, count):
            return
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp / folder_name, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
