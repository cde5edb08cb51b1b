"""The Loihi 2 check of one network: findings + resource estimate, as JSON / Markdown, and the pass/fail verdict."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ilif_lava.loihi2.findings import Finding, check_parameters, check_state_ranges
from ilif_lava.loihi2.layers import PathOrH5
from ilif_lava.loihi2.limits import CHIP_CORES, NEURONS_PER_CORE_MAX, SYNMEM_WORDS_PER_CORE
from ilif_lava.loihi2.resources import LayerResource, estimate_resources
from ilif_lava.errors import IlifLavaError


class Loihi2ConstraintError(IlifLavaError, ValueError):
    """A network violates a Loihi 2 parameter/state limit or the core budget."""


@dataclass
class Loihi2Report:
    """Parameter/state findings plus the resource estimate of one network."""

    path: str
    findings: List[Finding]
    state_findings: List[Finding] = field(default_factory=list)
    resources: List[LayerResource] = field(default_factory=list)
    max_cores: Optional[int] = None
    neurons_per_core: int = NEURONS_PER_CORE_MAX
    synmem_words_per_core: int = SYNMEM_WORDS_PER_CORE

    @property
    def failures(self) -> List[Finding]:
        return [f for f in self.findings + self.state_findings if not f.ok]

    @property
    def total_neurons(self) -> int:
        return sum(r.neurons for r in self.resources)

    @property
    def total_synapses(self) -> int:
        return sum(r.synapses for r in self.resources)

    @property
    def total_cores(self) -> int:
        return sum(r.cores for r in self.resources)

    @property
    def chips(self) -> int:
        """Loihi 2 chips the estimated cores need (``CHIP_CORES`` neuro cores per chip; at least 1; an estimate)."""
        return max(1, math.ceil(self.total_cores / CHIP_CORES))

    @property
    def cores_ok(self) -> bool:
        return self.max_cores is None or self.total_cores <= self.max_cores

    @property
    def ok(self) -> bool:
        return not self.failures and self.cores_ok

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able dict (infinite headroom is written as the string ``"inf"``, n/a as ``None``)."""
        return {
            "path": self.path,
            "ok": self.ok,
            "estimate": True,
            "total_neurons": self.total_neurons,
            "total_synapses": self.total_synapses,
            "total_cores": self.total_cores,
            "max_cores": self.max_cores,
            "cores_ok": self.cores_ok,
            "chip_cores": CHIP_CORES,
            "chips_needed": self.chips,
            "neurons_per_core": self.neurons_per_core,
            "synmem_words_per_core": self.synmem_words_per_core,
            "findings": [f.to_dict() for f in self.findings],
            "state_findings": [f.to_dict() for f in self.state_findings],
            "resources": [r.to_dict() for r in self.resources],
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def to_markdown(self) -> str:
        """Markdown summary: verdict, findings table, resource table (estimates)."""
        def fmt(x: Any) -> str:
            if x is None:
                return "-"
            if isinstance(x, float):
                if math.isnan(x):
                    return "-"
                if math.isinf(x):
                    return "inf"
                return f"{x:.2f}" if x != int(x) else f"{int(x)}"
            return str(x)

        lines = [f"# Loihi 2 check: {self.path}", "",
                 f"**{'OK' if self.ok else 'FAIL'}**: {len(self.failures)} failing finding(s); estimated cores "
                 f"{self.total_cores}" + (f" (budget {self.max_cores})" if self.max_cores is not None else "")
                 + f", chip has {CHIP_CORES}: {self.chips} chip(s) needed. Resource numbers are estimates.", "",
                 "| layer | key | min | max | limit min | limit max | headroom bits | ok |",
                 "|---|---|---|---|---|---|---|---|"]
        for f in self.findings + self.state_findings:
            lines.append(f"| {f.layer} | {f.key} | {fmt(f.value_min)} | {fmt(f.value_max)} | {fmt(f.limit_min)} | "
                         f"{fmt(f.limit_max)} | {fmt(f.headroom_bits)} | {'yes' if f.ok else '**NO**'} |")
        lines += ["", "| layer | type | neuron | neurons | fan-in | fan-out max | synapses | stored weights | "
                  "SynMem words | state words | neurons/core | cores (est.) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.resources:
            lines.append(f"| {r.layer} | {r.type} | {r.neuron_type or '-'} | {r.neurons} | {r.fan_in} | "
                         f"{r.fan_out_max} | {r.synapses} | {r.stored_weights} | {r.synapse_words} | "
                         f"{r.state_words_per_neuron}{'+1b' if r.state_extra_bits_per_neuron else ''} | "
                         f"{r.neurons_per_core} | {r.cores} |")
        return "\n".join(lines) + "\n"


def check_network(path: PathOrH5, state_maxabs: Optional[Mapping[Tuple[int, str], Union[int, float]]] = None,
                  max_cores: Optional[int] = None, **resource_kwargs: Any) -> Loihi2Report:
    """Run :func:`check_parameters`, :func:`check_state_ranges` (when ``state_maxabs`` is given) and
    :func:`estimate_resources` (``resource_kwargs`` are passed on). ``report.ok`` is False on any failing finding
    or when the estimated total cores exceed ``max_cores``."""
    findings = check_parameters(path)
    states = check_state_ranges(state_maxabs) if state_maxabs else []
    resources = estimate_resources(path, **resource_kwargs)
    name = str(path) if isinstance(path, (str, Path)) else str(getattr(path, "filename", path))
    return Loihi2Report(path=name, findings=findings, state_findings=states, resources=resources,
                        max_cores=max_cores,
                        neurons_per_core=int(resource_kwargs.get("neurons_per_core", NEURONS_PER_CORE_MAX)),
                        synmem_words_per_core=int(resource_kwargs.get("synmem_words_per_core",
                                                                      SYNMEM_WORDS_PER_CORE)))


def assert_fits(report: Loihi2Report) -> None:
    """Raise :class:`Loihi2ConstraintError` listing each failing layer/key with its numbers (and the core budget)."""
    if report.ok:
        return
    lines = [f.message for f in report.failures]
    if not report.cores_ok:
        per_layer = ", ".join(f"layer {r.layer}: {r.cores}" for r in report.resources if r.cores)
        lines.append(f"estimated cores {report.total_cores} > max_cores {report.max_cores} ({per_layer})")
    raise Loihi2ConstraintError(f"{report.path} does not fit Loihi 2 constraints:\n  " + "\n  ".join(lines))
