"""Pipeline stage package. Importing it installs ilif_lava's Lava import shims (ilif_lava.compat) first, so the
stage's own imports of Lava and slayer are patched whatever the import order."""
import ilif_lava  # noqa: F401
