"""The plotly.js the HTML report inlines: a vendored cartesian partial bundle (see vendor/README.md)."""

from __future__ import annotations

from functools import cache
from importlib import resources

PLOTLY_JS_VERSION = "4.1.1"
PLOTLY_JS_FILE = f"plotly-cartesian-{PLOTLY_JS_VERSION}.min.js"
PLOTLY_JS_SHA256 = "79542150855a52c567260e3137095dbe2b744e6d702a5cabe67da246942fba7a"
# The trace types the cartesian bundle registers (its README; the browser test reads the bundle's registry).
TRACE_TYPES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour", "image",
                         "pie", "scatter", "scatterternary", "violin"})


@cache
def plotly_js() -> str:
    """The minified plotly.js source (1.5 MB), read once from the package data."""
    return (resources.files("capacity_forecaster.report") / "vendor" / PLOTLY_JS_FILE).read_text(encoding="utf-8")


def check_trace_types(types: set[str], where: str) -> None:
    """Raise ValueError when a figure uses a trace type the inlined bundle does not hold.

    Args:
        types: the ``type`` of every trace of the figure.
        where: the figure's title, for the message.
    """
    unknown = sorted(types - TRACE_TYPES)
    if unknown:
        raise ValueError(f"figure {where!r} uses trace type(s) {', '.join(unknown)}, which the report's plotly.js "
                         f"bundle ({PLOTLY_JS_FILE}) does not hold; it has {', '.join(sorted(TRACE_TYPES))}")
