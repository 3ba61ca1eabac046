"""Lightning modules, data modules and callbacks — the only place that imports ``lightning.pytorch``."""
