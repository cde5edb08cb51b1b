"""Lava processes of ilif-lava. This folder holds only ``process.py`` and ``models.py``: the Lava compiler
executes every ``.py`` file next to a process definition when it searches for process models."""
