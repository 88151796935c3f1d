"""Policies shipped with the package (see each .json card for how they were trained)."""
