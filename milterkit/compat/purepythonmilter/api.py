"""``purepythonmilter.api``: the application-side modules under their original names."""

from __future__ import annotations

from . import application, logger, models

__all__ = ["application", "logger", "models"]
