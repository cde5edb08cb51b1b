"""Training step of whole networks: the paper's networks (ILIF vs LIF vs slayer CUBA neurons) and a small conv net
built with ``ilif_lava.block`` vs the same net built from SpikingJelly or snnTorch layers.

A step is ``zero_grad -> forward -> cross-entropy of the time-averaged logits -> backward -> Adam step``, timed
round-robin over the networks of one case (:func:`benchmarks.common.round_robin`), one input per case. Each step is timed twice: wall
time and the calling thread's CPU time (``time.thread_time``; with one torch thread every operator, backward
included, runs on that thread). Ratios and targets use the CPU-time medians, which other jobs sharing the cores
do not inflate the way they inflate wall time; the wall medians are reported next to them.

* ``paper``: ``training.models.build_model('vgg11bn' | 'resnet18', (3, 32, 32), 10, neuron, hidden=W)`` at two
  widths (``hidden`` 32 and 64: the paper's channel counts times W / 512), T = 4 and 6, direct-encoded input (the
  same random image [N, 3, 32, 32] at every step). Neurons: ILIF, LIF, and slayer's CUBA for resnet18 (vgg11bn is
  built from ILIF blocks whose batch norm folds into the ILIF bias, so it has no CUBA form). Target: ILIF <= 1.2x LIF.
* ``peers``: N-MNIST-shaped spikes [N, 2, 34, 34, T] (5 % density) through conv 2->16 5x5 (padding 1) + neuron,
  2x2 average pool, conv 16->32 3x3 + neuron, 2x2 average pool, Linear 2048 -> 10 (logits every step). Built with
  ``ilif_lava.block`` (``Conv`` with ``delay_shift=True``, the second with ``pre_pool=2``; ``Readout`` with
  ``pre_pool=2``) for ILIF and the LIF variant; with SpikingJelly (``layer.Conv2d``/``AvgPool2d``/``Linear`` and
  ``neuron.LIFNode``, multi-step mode, [T, N, ...] input) and snnTorch (``nn.Conv2d`` + ``snn.Leaky`` stepped over T,
  as its tutorials do) when those packages are importable (optional, benchmark-only: ``pip install --no-deps
  spikingjelly loguru`` / ``snntorch``); absent ones are skipped with a note. Target: ILIF blocks no slower than
  SpikingJelly.

* ``layout``: one convolution synapse (the peer net's two), forward + backward, in slayer's layout (Conv3d with a
  [k, k, 1] kernel over time-last [N, C, H, W, T]) and with T folded into the batch for Conv2d (plus the two
  copies a time-last block needs around it); the blocks keep the faster.

``python -m benchmarks.bench_networks [--quick] [--only paper peers layout]`` runs it alone (results printed and written
to ``benchmarks/results/networks.json``); ``make bench`` runs it inside its ``train`` section.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from benchmarks.common import INPUT_DENSITY, NUM_CLASSES, log, ratio, round_robin, spike_input

PAPER_ARCHS = ("vgg11bn", "resnet18")
PAPER_WIDTHS = (32, 64)          # ``hidden``: channel counts are the paper's x hidden / 512
PAPER_STEPS = (4, 6)
PAPER_SHAPE = (3, 32, 32)
PEER_SHAPE = (2, 34, 34)
#: (batch, T) of the peer comparison: full run = the shape of the comparison that motivated it; quick = smaller
PEER_SIZES = {"full": (32, 32), "quick": (8, 16)}
PAPER_BATCH = {"full": 16, "quick": 8}
TARGET_PAPER = 1.2               # ILIF step <= 1.2x LIF step
TARGET_PEER = 1.0                # ILIF blocks step <= SpikingJelly's


def _ms(res: Dict[str, Dict[str, Any]], kind: str = "cpu") -> Dict[str, float]:
    return {k: 1e3 * v[kind]["median_s"] for k, v in res.items()}


def _step_fn(model: torch.nn.Module, forward: Callable[[], torch.Tensor], y: torch.Tensor,
             before: Optional[Callable[[], None]] = None) -> Callable[[], None]:
    """One training step: zero_grad, ``forward()`` -> logits [N, K, T], cross-entropy of their time mean, backward,
    Adam step. ``before`` runs first (a stateful peer's state reset)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        if before is not None:
            before()
        opt.zero_grad(set_to_none=True)
        logits = forward()
        F.cross_entropy(logits.mean(-1), y).backward()
        opt.step()
    return step


# ---------------------------------------------------------------------------------------------------------
# the paper's networks
# ---------------------------------------------------------------------------------------------------------
def paper_neurons(arch: str) -> Tuple[str, ...]:
    return ("ILIF", "LIF", "CUBA") if arch == "resnet18" else ("ILIF", "LIF")


def run_paper(quick: bool, warmup: int, repeats: int, budget_s: float,
              notes: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    """Every (arch, width, T) of the paper networks, ILIF vs LIF (vs CUBA); one row each. A neuron the network
    builder refuses (``ValueError``) is skipped with a line in ``notes``."""
    from training.models import build_model
    batch = PAPER_BATCH["quick" if quick else "full"]
    rows: List[Dict[str, Any]] = []
    notes = [] if notes is None else notes
    for arch in PAPER_ARCHS:
        for hidden in PAPER_WIDTHS:
            for T in PAPER_STEPS:
                g = torch.Generator().manual_seed(T)
                image = torch.randn(batch, *PAPER_SHAPE, generator=g)
                x = image[..., None].expand(*image.shape, T).contiguous()       # direct encoding [N, 3, 32, 32, T]
                y = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
                fns = {}
                for neuron in paper_neurons(arch):
                    torch.manual_seed(0)
                    try:
                        model = build_model(arch, PAPER_SHAPE, NUM_CLASSES, neuron, hidden=hidden).train()
                    except ValueError as exc:
                        note = f"{arch} with {neuron} neurons not built: {str(exc).splitlines()[0]}"
                        if note not in notes:
                            notes.append(note)
                        continue
                    fns[neuron] = _step_fn(model, lambda m=model: m(x)[0], y)
                log(f"paper net: {arch} hidden={hidden} batch={batch} T={T} ({', '.join(fns)})")
                res = round_robin(fns, warmup=warmup, repeats=repeats, budget_s=budget_s)
                ms = _ms(res)
                row = {"arch": arch, "hidden": hidden, "batch": batch, "T": T, "in_shape": list(PAPER_SHAPE),
                       "ms": ms, "wall_ms": _ms(res, "wall"), "timings": res,
                       "ilif_over_lif": ratio(ms["ILIF"], ms["LIF"]),
                       "ilif_over_cuba": ratio(ms["ILIF"], ms["CUBA"]) if "CUBA" in ms else None,
                       "repeats_done": len(res["ILIF"]["cpu"]["samples_s"])}
                rows.append(row)
                log("  " + " | ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
                    + f" -> ILIF/LIF {row['ilif_over_lif']:.2f}x")
    return rows


# ---------------------------------------------------------------------------------------------------------
# the same small conv net in ilif_lava.block, SpikingJelly and snnTorch
# ---------------------------------------------------------------------------------------------------------
PEER_C1, PEER_C2 = 16, 32
PEER_POOLED = PEER_C2 * 8 * 8   # 34x34 -> conv 5x5 padding 1 -> 32 -> pool 16 -> conv 3x3 -> 16 -> pool 8


def block_net(variant: str) -> torch.nn.Sequential:
    """The peer net from ``ilif_lava.block`` (slayer-style blocks, time last, one-step delay shift)."""
    from ilif_lava import block
    p = {"threshold": 1.0, "tau": 2.0, "variant": variant}
    return torch.nn.Sequential(
        block.Conv(p, PEER_SHAPE[0], PEER_C1, 5, padding=1, weight_scale=2, delay_shift=True),
        block.Conv(p, PEER_C1, PEER_C2, 3, padding=1, pre_pool=2, weight_scale=2, delay_shift=True),
        block.Readout(p, PEER_POOLED, NUM_CLASSES, pre_pool=2, delay_shift=False))


def _optional(name: str) -> Tuple[Optional[Any], Optional[str]]:
    """Import an optional peer package: (module, None) or (None, why it is skipped)."""
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip with a note"
        return None, f"{name} not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); skipped"


def spikingjelly_net() -> Tuple[Optional[torch.nn.Module], Optional[Callable[[torch.nn.Module], None]], Optional[str]]:
    """The peer net in SpikingJelly's multi-step mode ([T, N, ...] in, [T, N, K] out), or a note why not."""
    mod, why = _optional("spikingjelly.activation_based.neuron")
    if mod is None:
        return None, None, why
    from spikingjelly.activation_based import functional, layer, neuron
    net = torch.nn.Sequential(
        layer.Conv2d(PEER_SHAPE[0], PEER_C1, 5, padding=1, bias=False, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_threshold=1.0, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"),
        layer.Conv2d(PEER_C1, PEER_C2, 3, padding=1, bias=False, step_mode="m"),
        neuron.LIFNode(tau=2.0, v_threshold=1.0, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(PEER_POOLED, NUM_CLASSES, step_mode="m"))
    return net, functional.reset_net, None


class SnnTorchNet(torch.nn.Module):
    """The peer net in snnTorch's style: ``nn`` layers and ``snn.Leaky`` called once per step."""

    def __init__(self, snn: Any) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(PEER_SHAPE[0], PEER_C1, 5, padding=1, bias=False)
        self.lif1 = snn.Leaky(beta=0.5, threshold=1.0)
        self.conv2 = torch.nn.Conv2d(PEER_C1, PEER_C2, 3, padding=1, bias=False)
        self.lif2 = snn.Leaky(beta=0.5, threshold=1.0)
        self.fc = torch.nn.Linear(PEER_POOLED, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [T, N, C, H, W] -> logits [N, K, T]."""
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        out = []
        for t in range(x.shape[0]):
            s1, mem1 = self.lif1(self.conv1(x[t]), mem1)
            s2, mem2 = self.lif2(self.conv2(F.avg_pool2d(s1, 2)), mem2)
            out.append(self.fc(F.avg_pool2d(s2, 2).flatten(1)))
        return torch.stack(out, dim=-1)


def run_peers(quick: bool, warmup: int, repeats: int, budget_s: float) -> Dict[str, Any]:
    """The peer comparison (one case); returns its row and the notes of skipped peers."""
    batch, T = PEER_SIZES["quick" if quick else "full"]
    x = spike_input(batch, PEER_SHAPE, T, seed=7)                       # [N, C, H, W, T]
    x_tn = x.permute(4, 0, 1, 2, 3).contiguous()                        # [T, N, C, H, W] for the peers
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=torch.Generator().manual_seed(7))
    fns: Dict[str, Callable[[], None]] = {}
    notes: List[str] = []
    for variant in ("ILIF", "LIF"):
        torch.manual_seed(0)
        net = block_net(variant).train()
        fns[f"ilif_lava {variant} (blocks)"] = _step_fn(net, lambda n=net: n(x), y)
    sj, reset, why = spikingjelly_net()
    if sj is None:
        notes.append(why)
    else:
        sj.train()
        fns["SpikingJelly LIFNode (multi-step)"] = _step_fn(sj, lambda: sj(x_tn).permute(1, 2, 0), y,
                                                            before=lambda: reset(sj))
    snn, why = _optional("snntorch")
    if snn is None:
        notes.append(why)
    else:
        st = SnnTorchNet(snn).train()
        fns["snnTorch Leaky (stepped)"] = _step_fn(st, lambda: st(x_tn), y)
    log(f"peer conv net: batch={batch} T={T} ({', '.join(fns)})")
    res = round_robin(fns, warmup=warmup, repeats=repeats, budget_s=budget_s)
    ms = _ms(res)
    ours = ms["ilif_lava ILIF (blocks)"]
    row = {"batch": batch, "T": T, "in_shape": list(PEER_SHAPE), "density": INPUT_DENSITY, "ms": ms,
           "wall_ms": _ms(res, "wall"), "timings": res, "over_ilif": {k: ratio(v, ours) for k, v in ms.items()},
           "repeats_done": len(res["ilif_lava ILIF (blocks)"]["cpu"]["samples_s"])}
    sj_ms = ms.get("SpikingJelly LIFNode (multi-step)")
    row["ilif_over_spikingjelly"] = ratio(ours, sj_ms) if sj_ms else None
    log("  " + " | ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
    return {"row": row, "notes": notes}


# ---------------------------------------------------------------------------------------------------------
# the convolution layout over time
# ---------------------------------------------------------------------------------------------------------
#: (N, C_in, H, T, C_out, kernel, padding): the peer net's two convolutions at the full run's batch and T
LAYOUT_CASES = ((32, 2, 34, 32, 16, 5, 1), (32, 16, 16, 32, 32, 3, 1))


def conv_time_last(x: torch.Tensor, w: torch.Tensor, pad: int) -> torch.Tensor:
    """slayer's synapse layout: Conv3d with a [k, k, 1] kernel over [N, C, H, W, T] (time last, no copies)."""
    return F.conv3d(x, w, padding=(pad, pad, 0))


def conv_folded(x: torch.Tensor, w: torch.Tensor, pad: int) -> torch.Tensor:
    """T folded into the batch: [N, C, H, W, T] -> [N*T, C, H, W] (a copy), Conv2d, back to time last (a copy;
    the neuron's time loop needs each neuron's T steps contiguous)."""
    n, c, h, wd, t = x.shape
    y = F.conv2d(x.permute(0, 4, 1, 2, 3).reshape(n * t, c, h, wd), w[..., 0], padding=pad)
    return y.view(n, t, *y.shape[1:]).permute(0, 2, 3, 4, 1).contiguous()


def run_layout(quick: bool, warmup: int, repeats: int, budget_s: float) -> List[Dict[str, Any]]:
    """Forward + backward of one convolution synapse in both layouts (equal results checked), per case."""
    rows = []
    for n, c, h, t, co, k, pad in LAYOUT_CASES:
        if quick:
            n, t = n // 4, t // 2
        g = torch.Generator().manual_seed(k)
        x = (torch.rand(n, c, h, h, t, generator=g) < INPUT_DENSITY).float().requires_grad_(True)
        w = (0.1 * torch.randn(co, c, k, k, 1, generator=g)).requires_grad_(True)
        out = h + 2 * pad - k + 1
        up = torch.randn(n, co, out, out, t, generator=g)
        diff = (conv_time_last(x, w, pad) - conv_folded(x, w, pad)).abs().max().item()
        fns = {name: (lambda f=f: f(x, w, pad).backward(up))
               for name, f in (("conv3d_time_last", conv_time_last), ("conv2d_T_in_batch", conv_folded))}
        log(f"conv layout: [{n}, {c}, {h}, {h}, {t}] -> {co} channels, {k}x{k}")
        res = round_robin(fns, warmup=warmup, repeats=repeats, budget_s=budget_s)
        ms = _ms(res)
        rows.append({"shape": [n, c, h, h, t], "out_channels": co, "kernel": k, "ms": ms, "wall_ms": _ms(res, "wall"),
                     "max_abs_diff": diff,
                     "folded_over_time_last": ratio(ms["conv2d_T_in_batch"], ms["conv3d_time_last"])})
        log("  " + " | ".join(f"{key} {v:.1f} ms" for key, v in ms.items()))
    return rows


# ---------------------------------------------------------------------------------------------------------
def markdown(result: Dict[str, Any]) -> List[str]:
    """Summary lines (tables and target verdicts) for ``benchmarks/results/summary.md``."""
    L: List[str] = []
    paper = result.get("paper") or []
    if paper:
        worst = max(paper, key=lambda r: r["ilif_over_lif"])
        ok = worst["ilif_over_lif"] <= TARGET_PAPER
        L += ["", "## The paper's networks: training step (forward + backward + Adam), median thread-CPU ms "
                  "(wall ms)", "",
              f"Direct-encoded random images [N, 3, 32, 32] repeated over T, cross-entropy of the time-averaged "
              f"logits. Target ILIF <= {TARGET_PAPER}x LIF: {'PASS' if ok else 'FAIL'} (worst "
              f"{worst['ilif_over_lif']:.2f}x, {worst['arch']} hidden={worst['hidden']} T={worst['T']}).", "",
              "| net | hidden | batch | T | ILIF ms | LIF ms | CUBA ms | ILIF/LIF | ILIF/CUBA | repeats |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in paper:
            cuba, over = r["ms"].get("CUBA"), r["ilif_over_cuba"]
            cuba_s = "-" if cuba is None else f"{cuba:.1f}"
            over_s = "-" if over is None else f"{over:.2f}"
            w = r["wall_ms"]
            L.append(f"| {r['arch']} | {r['hidden']} | {r['batch']} | {r['T']} | {r['ms']['ILIF']:.1f} "
                     f"({w['ILIF']:.1f}) | {r['ms']['LIF']:.1f} ({w['LIF']:.1f}) | {cuba_s} | "
                     f"{r['ilif_over_lif']:.2f} | {over_s} | {r['repeats_done']} |")
        for n in result.get("paper_notes", []):
            L += ["", f"Note: {n}"]
    peers = result.get("peers")
    if peers:
        r = peers["row"]
        v = r["ilif_over_spikingjelly"]
        verdict = "n/a (SpikingJelly absent)" if v is None else (
            f"{'PASS' if v <= TARGET_PEER else 'FAIL'} ({v:.2f}x SpikingJelly's time)")
        L += ["", "## The same small conv net in ilif_lava.block and in peer frameworks: training step, median "
                  "thread-CPU ms (wall ms)", "",
              f"Spikes [{r['batch']}, 2, 34, 34, T = {r['T']}] at {r['density']:.0%} density; conv 2->16 5x5, "
              f"avg pool 2, conv 16->32 3x3, avg pool 2, Linear -> 10 logits per step; forward + backward + Adam. "
              f"Target: ILIF blocks no slower than SpikingJelly: {verdict}.", "",
              "| built with | ms per step | vs ilif_lava ILIF |", "|---|---|---|"]
        for k, ms in r["ms"].items():
            L.append(f"| {k} | {ms:.1f} ({r['wall_ms'][k]:.1f}) | {r['over_ilif'][k]:.2f}x |")
        for n in peers["notes"]:
            L += ["", f"Note: {n}"]
    layout = result.get("layout") or []
    if layout:
        L += ["", "## Convolution layout over time: one synapse, forward + backward, median thread-CPU ms", "",
              "| input [N, C, H, W, T] | out channels | kernel | Conv3d, time last | Conv2d, T in the batch (+ 2 "
              "copies) | ratio | max abs diff |", "|---|---|---|---|---|---|---|"]
        for r in layout:
            L.append(f"| {r['shape']} | {r['out_channels']} | {r['kernel']}x{r['kernel']} | "
                     f"{r['ms']['conv3d_time_last']:.1f} | {r['ms']['conv2d_T_in_batch']:.1f} | "
                     f"{r['folded_over_time_last']:.2f}x | {r['max_abs_diff']:.1e} |")
    return L


def run(quick: bool, warmup: int, repeats: int, budget_s: float,
        only: Sequence[str] = ("paper", "peers", "layout")) -> Dict[str, Any]:
    out: Dict[str, Any] = {"benchmark": "network_training_step",
                           "what": "zero_grad + forward + cross-entropy(mean logits) + backward + Adam, median s",
                           "torch_threads": torch.get_num_threads(), "quick": quick}
    if "paper" in only:
        out["paper_notes"] = []
        out["paper"] = run_paper(quick, warmup, repeats, budget_s, out["paper_notes"])
    if "peers" in only:
        out["peers"] = run_peers(quick, warmup, repeats, budget_s)
    if "layout" in only:
        out["layout"] = run_layout(quick, warmup, repeats, budget_s)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_networks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller peer case and paper batch")
    ap.add_argument("--only", nargs="+", choices=("paper", "peers", "layout"), default=["paper", "peers", "layout"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=40.0, help="seconds of timed rounds per case (min 3 repeats)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args(argv)
    from benchmarks.common import DEFAULT_OUT, machine_info, setup_process, write_json
    setup_process(args.threads)
    result = run(args.quick, warmup=1, repeats=args.repeats, budget_s=args.budget, only=args.only)
    result["machine"] = machine_info()
    write_json(DEFAULT_OUT, "networks.json", result)
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
