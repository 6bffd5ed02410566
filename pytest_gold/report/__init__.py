"""The campaign report: one self-contained HTML file about a ``--gold`` run.

- :mod:`.model`: what a report shows, as plain data (cases, engines, the run);
- :mod:`.campaignlog`: the campaign log (JSON lines) a run leaves, read back into a model,
  and a model rebuilt from a ``--gold-results`` table;
- :mod:`.views` and :mod:`.grid`: pure computations (timeline with aggregation,
  utilisation, histogram, failures; the parameter grid);
- :mod:`.charts` and :mod:`.page`: the HTML page, with Bokeh for the charts;
- :mod:`.options`: ``--gold-report`` and ``--gold-report-interval``;
- :mod:`.recorder`: the controller plugin that keeps the log, and :mod:`.redraw`, which
  rewrites the report during the run;
- :mod:`.cli`: ``python -m pytest_gold report``.

Only :mod:`.charts` and :mod:`.page` need the optional ``pytest-gold[report]`` extra.
"""

from __future__ import annotations

#: The optional extra that brings the report's plotting library.
REPORT_EXTRA = "pytest-gold[report]"


def missing_dependency() -> str | None:
    """Why a report cannot be drawn here (Bokeh is not installed), or ``None``."""
    try:
        import bokeh  # noqa: F401
    except ImportError as error:
        return (
            f"the campaign report needs Bokeh, which is not installed here ({error}); "
            f"install the optional extra: pip install '{REPORT_EXTRA}'"
        )
    return None
