"""The command line's own errors: an unknown flag is reported by the subcommand that got it, with a suggestion."""
from __future__ import annotations

import pytest

from pipeline.cli import main


@pytest.mark.parametrize("argv,prog,unknown,hint", [
    (["train", "--datset", "digits"], "ilif-lava train", "--datset digits", " (did you mean --dataset?)"),
    (["simulate", "RUN", "--limt", "3"], "ilif-lava simulate", "--limt 3", " (did you mean --limit?)"),
    (["nir", "export", "RUN", "--dtt=2"], "ilif-lava nir export", "--dtt=2", " (did you mean --dt?)"),
    (["train", "--zzzzzz"], "ilif-lava train", "--zzzzzz", ""),
])
def test_unknown_flag_names_the_subcommand_and_suggests(argv, prog, unknown, hint, capsys, tmp_path):
    with pytest.raises(SystemExit) as ex:
        main([str(tmp_path) if a == "RUN" else a for a in argv])
    err = capsys.readouterr().err
    assert ex.value.code == 2
    assert err.splitlines() == [f"{prog}: error: unrecognized arguments: {unknown}{hint}", f"(see '{prog} --help')"]


def test_known_flags_still_parse(capsys):
    from pipeline.cli import build_parser
    ns = build_parser().parse_args(["train", "--dataset", "digits", "-T", "4"])
    assert (ns.cmd, ns.dataset, ns.time_bins) == ("train", "digits", 4)
