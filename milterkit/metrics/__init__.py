"""Prometheus metrics and a health endpoint for a milterkit Client (``pip install
'milterkit[metrics]'``): :class:`Metrics` counts what the Client's signals report,
:class:`MetricsServer` serves ``/metrics`` and ``/health`` over HTTP, and :func:`enable_metrics`
does both (``milterkit run --metrics-listen 127.0.0.1:9101``). See docs/scaling.rst.
"""

from __future__ import annotations

from .collectors import Metrics
from .http import MetricsError, MetricsServer, enable_metrics

__all__ = ["Metrics", "MetricsError", "MetricsServer", "enable_metrics"]
