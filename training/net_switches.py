"""The switches every trainable network here has: quantized (bit-exact integer) forward and state recording.

Shared by the slayer-block networks (:mod:`training.models`) and the paper's networks (:mod:`training.paper_models`).
"""
from __future__ import annotations


class NeuronSwitches:
    """``set_quantized`` / ``set_record_states`` for a network whose ``spiking_blocks()`` each have a ``.neuron``."""

    def set_quantized(self, on: bool) -> None:
        """Switch every ILIF neuron to the bit-exact integer forward (QAT / deployment twin)."""
        for b in self.spiking_blocks():
            if hasattr(b.neuron, "quantized"):
                b.neuron.quantized = on

    def set_record_states(self, on: bool) -> None:
        for b in self.spiking_blocks():
            if hasattr(b.neuron, "record_states"):
                b.neuron.record_states = on
