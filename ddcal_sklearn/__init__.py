"""ddcal-sklearn: dataset distillation that does not overlook calibration."""

__version__ = "0.1.0.dev0"
