"""Per-robot calibration files (YAML) and the procedures that produce them."""
