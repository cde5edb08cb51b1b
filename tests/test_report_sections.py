"""The compare report's gold-vector pack section (simulations/report.py): absent, present, damaged, a link."""
from __future__ import annotations

import json

from simulations import report


def test_gold_pack_section_absent_present_and_damaged(tmp_path):
    g = report.gold_pack_summary(tmp_path)
    assert g == {"folder": str(tmp_path / "gold"), "present": False}
    assert "not written yet: `ilif-lava gold RUN`" in report._gold_markdown(g)
    (tmp_path / "gold").mkdir()
    manifest = {"samples": 6, "steps": 4, "state_samples": 2, "files": {"a.npy": {}, "b.npy": {}}}
    (tmp_path / "gold" / "manifest.json").write_text(json.dumps(manifest))
    g = report.gold_pack_summary(tmp_path)
    assert (g["present"], g["samples"], g["steps"], g["state_samples"], g["files"]) == (True, 6, 4, 2, 2)
    assert "6 samples x 4 steps, states of 2 samples, 2 files" in report._gold_markdown(g)
    (tmp_path / "gold" / "manifest.json").write_text("{not json")
    g = report.gold_pack_summary(tmp_path)
    assert g["present"] and "unreadable" in report._gold_markdown(g)
    (tmp_path / "gold" / "manifest.json").unlink()
    (tmp_path / "gold" / "manifest.json").symlink_to(tmp_path / "elsewhere.json")      # links are not followed
    assert report.gold_pack_summary(tmp_path)["present"] is False
