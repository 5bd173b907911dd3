"""The PDF executive pack (reportlab): title page, KPIs, key charts, top risks, savings, assumptions appendix."""

from __future__ import annotations

import io
import logging
import math
import re
from typing import Any
from xml.sax.saxutils import escape

import pandas as pd
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape, letter
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import inch
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    Image,
    KeepInFrame,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from capacity_forecaster.report import style
from capacity_forecaster.report.accuracy_history import BUCKET_HEADERS, RUN_HEADERS, display_rows, explanation
from capacity_forecaster.report.capacity import CAPACITY_HEADERS, capacity_rows
from capacity_forecaster.report.comparison import (
    SIDES,
    StoredScenario,
    change_text,
    headline,
    side_level,
    side_probability,
    side_when,
    stale_run,
    stored_scenario,
    whatif_note,
)
from capacity_forecaster.report.data import ReportData, not_available, table_title
from capacity_forecaster.report.lineage import lineage
from capacity_forecaster.report.risks import (
    AT_RISK_LEVELS,
    breach_when,
    ordered_recommendations,
    report_risks,
    table_level,
    table_probability,
)
from capacity_forecaster.report.summary import (
    Kpi,
    assumptions,
    data_period_text,
    fleet_text,
    headlines,
    kpis,
    model_accuracy,
    published_models,
)
from capacity_forecaster.report.text import (
    NO_PRICES,
    NOT_PRICED,
    model_label,
    money,
    plural,
    priced_servers,
    says_something,
    told_columns,
)

log = logging.getLogger(__name__)

# report.page_size -> (width, height) in points, landscape.
PAGE_SIZES = {"a4": landscape(A4), "letter": landscape(letter)}
MARGIN = 0.5 * inch
NAVY = colors.HexColor(style.NAVY)
MUTED = colors.HexColor(style.MUTED)
GRID = colors.HexColor(style.GRID)
LEVEL_FILLS = {k: colors.HexColor(v) for k, v in style.RISK_COLOURS.items()}

_base = getSampleStyleSheet()
H1 = ParagraphStyle("h1", parent=_base["Heading1"], fontName="Helvetica-Bold", fontSize=18, textColor=NAVY,
                    spaceAfter=4)
H2 = ParagraphStyle("h2", parent=_base["Heading2"], fontName="Helvetica-Bold", fontSize=12, textColor=NAVY,
                    spaceBefore=6, spaceAfter=4)
BODY = ParagraphStyle("body", parent=_base["BodyText"], fontName="Helvetica", fontSize=10, leading=14)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8, leading=10, textColor=MUTED)
CELL = ParagraphStyle("cell", parent=BODY, fontSize=7.5, leading=9)
CELL_WRAP = ParagraphStyle("cellwrap", parent=CELL, fontSize=8, leading=9.5, wordWrap="CJK")  # breaks long ids
# A level on its colour ("stale (critical)" wraps in the Risk column).
CELL_LEVEL = ParagraphStyle("celllevel", parent=CELL, fontName="Helvetica-Bold", textColor=colors.white)
BULLET = ParagraphStyle("bullet", parent=BODY, leftIndent=14, bulletIndent=2, spaceAfter=4)


def _body(page: tuple[float, float]) -> tuple[float, float]:
    """Width and height of a page's text area (inside the margins and the running header)."""
    return page[0] - 2 * MARGIN, page[1] - 2 * MARGIN - 0.5 * inch


def _image(png: bytes, max_width: float, max_height: float) -> Image:
    """A PNG scaled to fit the box, keeping its aspect ratio."""
    width, height = ImageReader(io.BytesIO(png)).getSize()
    scale = min(max_width / width, max_height / height)
    return Image(io.BytesIO(png), width=width * scale, height=height * scale)


def keep_units(text: str) -> str:
    """A no-break space before each unit, so a line never breaks between a number and its ``%`` or ``GB``."""
    return re.sub(r"(?<=\d) (%|GB|cores?\b|days?\b)", "\u00a0\\1", text)


def _table(rows: list[list[Any]], widths: list[float], header_rows: int = 1,
           extra: list[tuple[Any, ...]] | None = None) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=header_rows, hAlign="LEFT")
    table.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, header_rows - 1), NAVY),
        ("TEXTCOLOR", (0, 0), (-1, header_rows - 1), colors.white),
        ("FONTNAME", (0, 0), (-1, header_rows - 1), "Helvetica-Bold"),
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("ROWBACKGROUNDS", (0, header_rows), (-1, -1), [colors.white, colors.HexColor("#F7F8FA")]),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, GRID),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        *(extra or []),
    ]))
    return table


def cards_per_row(count: int, most: int = 6) -> int:
    """Cards per row so the rows are even (11 cards: 6 + 5, never 5 + 5 + 1), at most ``most`` per row."""
    rows = max(1, math.ceil(count / most))
    return max(1, math.ceil(count / rows))


def _title_page(block: list[Flowable], width: float, body_height: float) -> list[Flowable]:
    """The title page's flowables under the title band (2 inches), on that one page: shrunk to fit where
    they are longer (fastStorage's eight key messages pushed one bullet alone onto page 2)."""
    top = 2.0 * inch
    return [Spacer(1, top), KeepInFrame(width, body_height - top - 0.1 * inch, block, mode="shrink")]


# Where a long id may break: after one of these (a Paragraph breaks only at spaces, else anywhere).
_ID_BREAKS = re.compile(r"(?<=[_\-./:])")
CARD_PADDING = 12.0  # a Table cell's default left + right padding


def breakable(text: str, width: float, style: ParagraphStyle) -> str:
    """``text`` escaped for a Paragraph of ``style``, each word wider than ``width`` broken after a ``_ - . / :``
    where its line is full (helper-69: the NAB id 'nab-cpu_utilization_asg_misconfiguration' in a card read
    'misconfigurati' / 'on cpu'); a word with no such place is left to reportlab, which cuts it anywhere."""
    def fits(piece: str) -> bool:
        return stringWidth(piece, style.fontName, style.fontSize) <= width

    words = []
    for word in text.split(" "):
        lines = [""]
        for piece in ([word] if fits(word) else [p for p in _ID_BREAKS.split(word) if p]):
            if lines[-1] and not fits(lines[-1] + piece):
                lines.append(piece)
            else:
                lines[-1] += piece
        words.append("<br/>".join(escape(line) for line in lines))
    return " ".join(words)


def _kpi_cards(items: list[Kpi], width: float) -> Table:
    per_row = cards_per_row(len(items))
    big = ParagraphStyle("kv", parent=BODY, fontName="Helvetica-Bold", fontSize=17, leading=21, textColor=NAVY)
    long = ParagraphStyle("kvl", parent=big, fontSize=11.5, leading=21)
    label_style = ParagraphStyle("kl", parent=BODY, fontName="Helvetica-Bold", fontSize=8.5, leading=10)
    # Escaped: a note names servers, and reportlab reads '<' and '&' as markup (helper-51: an id 'x<font ...>y'
    # stopped the report, 'R&D-01' printed as 'R&D-01;').
    inner = width / per_row - CARD_PADDING

    def value(text: str) -> Paragraph:
        shown = big if len(text) <= 12 else long
        return Paragraph(breakable(text, inner, shown), shown)

    cells = [[Paragraph(escape(k.label), label_style), value(k.text),
              Paragraph(breakable(k.note, inner, SMALL) if k.note else "&nbsp;", SMALL)] for k in items]
    rows: list[list[Any]] = [cells[i:i + per_row] for i in range(0, len(cells), per_row)]
    rows[-1] += [""] * (per_row - len(rows[-1]))
    table = Table(rows, colWidths=[width / per_row] * per_row, hAlign="LEFT")
    table.setStyle(TableStyle([
        ("BOX", (0, 0), (-1, -1), 0.5, GRID), ("INNERGRID", (0, 0), (-1, -1), 0.5, GRID),
        ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#F7F8FA")), ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 8), ("BOTTOMPADDING", (0, 0), (-1, -1), 8),
    ]))
    return table


def _top_at_risk(ranked: pd.DataFrame, count: int) -> pd.DataFrame:
    """The rows the Top risks table lists (and its heading counts): the first ``count`` series at risk."""
    return ranked[ranked["risk_level"].isin(AT_RISK_LEVELS)].head(count)


def _top_risks(data: ReportData, ranked: pd.DataFrame, width: float) -> list[Flowable]:
    if ranked.empty:
        return [Paragraph(not_available("server_risk"), BODY)]
    at_risk = _top_at_risk(ranked, data.settings.report.top_risks)
    if at_risk.empty:
        return [Paragraph("No series is at risk of a breach within the forecast horizon.", BODY)]
    # Name columns that tell nothing (an inventory of ids only) are left out.
    shapes = {"hostname": ("Hostname", 1.35), "application": ("Application", 1.25)}
    names = [(key, *shapes[key]) for key in told_columns(at_risk, shapes)]
    header = ["Server", *(label for _, label, _ in names), "Metric", "Risk", "Breach date", "Days", "P(breach)",
              "Peak (%)", "Action"]
    rows: list[list[Any]] = [header]
    extra = []
    risk_col = 2 + len(names)
    for i, row in enumerate(at_risk.to_dict("records"), start=1):
        when, days = breach_when(row)
        # Names wrap inside their column (a 40-character CloudWatch id overprinted the next cells).
        cells = [Paragraph(escape(str(text)), CELL_WRAP)
                 for text in (row["server_id"], *(row.get(key) or "" for key, _, _ in names))]
        colour, level = table_level(row)
        rows.append([*cells, row["metric"],
                     Paragraph(escape(level), CELL_LEVEL), Paragraph(escape(when), CELL), days,  # stale words wrap
                     table_probability(row),
                     f"{row['peak_yhat']:.0f}" if not pd.isna(row.get("peak_yhat")) else "-", row.get("action") or "-"])
        extra.append(("BACKGROUND", (risk_col, i), (risk_col, i), LEVEL_FILLS[colour]))
        extra.append(("TEXTCOLOR", (risk_col, i), (risk_col, i), colors.white))
        extra.append(("FONTNAME", (risk_col, i), (risk_col, i), "Helvetica-Bold"))
    widths = [0.8 if names else 1.6, *(width for _, _, width in names), 0.75, 0.75, 0.95, 0.55, 0.75, 0.7, 1.0]
    scale = width / (sum(widths) * inch)
    return [_table(rows, [w * inch * scale for w in widths], extra=extra)]


def _savings_table(data: ReportData, width: float) -> list[Flowable]:
    recs = data.table("recommendations")
    if recs is None:
        return [Paragraph(not_available("recommendations"), BODY)]
    if not priced_servers(recs):
        return _unpriced_actions(recs, width)
    top = recs[recs["monthly_savings"] > 0].sort_values(["monthly_savings", "server_id"], ascending=[False, True])
    if top.empty:
        return [Paragraph("No recommendation saves money at current settings.", BODY)]
    inventory = data.table("inventory")
    names = inventory.set_index("server_id")["hostname"] if inventory is not None else pd.Series(dtype=object)
    shown = top.head(8)
    # The Target column only where a shown row has one (a consolidation's host).
    targets = ("target_server_id" in shown.columns
               and bool(shown["target_server_id"].map(lambda v: isinstance(v, str) and v != "").any()))
    hosts = says_something(names.reindex(shown["server_id"]).tolist())
    rows: list[list[Any]] = [["Server", *(["Hostname"] if hosts else []), "Action", *(["Target"] if targets else []),
                              "Current / month", "Projected / month", "Savings / month", "Rationale"]]
    def wrapped(text: Any) -> Paragraph:  # a long FQDN wraps in its cell (it ran into the Action column)
        return Paragraph(escape(str(text or "")), CELL_WRAP)

    for row in shown.to_dict("records"):
        rows.append([wrapped(row["server_id"]), *([wrapped(names.get(row["server_id"]))] if hosts else []),
                     row["action"], *([wrapped(row.get("target_server_id"))] if targets else []),
                     money(row["current_monthly_cost"]),
                     money(row["projected_monthly_cost"]),
                     money(row["monthly_savings"]), Paragraph(keep_units(escape(str(row.get("rationale") or ""))),
                                                              CELL)])
    server = _id_width(shown["server_id"], 0.8)
    target = _id_width(shown["target_server_id"], 0.8) if targets else 0.8
    widths = [server, *([1.3] if hosts else []), 0.9, *([target] if targets else []), 1.0, 1.05, 1.0,
              3.15 - (server - 0.8) - (target - 0.8)]
    scale = width / (sum(widths) * inch)
    first_money = 2 + int(hosts) + int(targets)
    table = _table(rows, [w * inch * scale for w in widths],
                   extra=[("ALIGN", (first_money, 1), (first_money + 2, -1), "RIGHT")])
    return [Paragraph(f"Largest savings (top {len(rows) - 1})", H2), table]


UNPRICED_ROWS = 12  # recommended actions listed when nothing is priced (all of them are in the workbook)


def _unpriced_actions(recs: pd.DataFrame, width: float) -> list[Flowable]:
    """Without prices the page lists what to do (the most urgent actions first), not an empty savings chart."""
    acting = ordered_recommendations(recs[recs["action"] != "keep"])
    story: list[Flowable] = [Paragraph("Recommended actions", H1), Paragraph(
        f"Savings are {NOT_PRICED}: {NO_PRICES}. {plural(len(acting), 'server')} with a recommended action"
        + (f"; the first {UNPRICED_ROWS} below, all" if len(acting) > UNPRICED_ROWS else ", listed below and")
        + " in the workbook's Recommendations sheet.", BODY)]
    if acting.empty:
        return story
    shown = acting.head(UNPRICED_ROWS)
    # The Target column only where a shown row has one (a consolidation's host): it was blank on every real lake.
    targets = says_something(shown.get("target_server_id", []))
    rows: list[list[Any]] = [["Server", "Action", *(["Target"] if targets else []), "Cores", "Memory (GB)",
                              "Rationale"]]
    for row in shown.to_dict("records"):
        removed = row["action"] in ("decommission", "consolidate")
        rows.append([Paragraph(escape(str(row["server_id"])), CELL_WRAP), row["action"],
                     *([Paragraph(escape(str(row.get("target_server_id") or "")), CELL_WRAP)] if targets else []),
                     "-" if removed else _size(row.get("recommended_cpu_cores"), "{:.0f}"),
                     "-" if removed else _size(row.get("recommended_memory_gb"), "{:.1f}"),
                     Paragraph(keep_units(escape(str(row.get("rationale") or ""))), CELL)])
    server = _id_width(shown["server_id"], 1.0)
    target = _id_width(shown["target_server_id"], 0.9) if targets else 0.0
    widths = [server, 0.9, *([target] if targets else []), 0.55, 0.8,
              4.6 - (server - 1.0) - (target - 0.9 if targets else -0.9)]
    scale = width / (sum(widths) * inch)
    # Every cell at the top of its row: a wrapped id and the plain cells beside it start on one line.
    return [*story, Spacer(1, 0.1 * inch), _table(rows, [w * inch * scale for w in widths],
                                                  extra=[("VALIGN", (0, 0), (-1, -1), "TOP")])]


CAPACITY_ROWS = 20  # groups on the capacity page (all of them are in the workbook and the HTML report)


def _capacity_page(groups: pd.DataFrame, width: float) -> list[Flowable]:
    """Capacity remaining per datacenter, environment and application (the HTML report and the workbook had it,
    the management pack did not: helper-50): datacenters, environments, then applications, each the least time
    remaining first."""
    shown = groups.head(CAPACITY_ROWS)  # in capacity_rows' order: datacenters, environments, applications
    intro = ("Per group of servers: the soonest breach among them, and the cores and GB left free at the forecast "
             "peak (or at a higher recurring period-end peak) and freed by the recommended actions."
             + (f" The first {CAPACITY_ROWS} of {len(groups)} groups; every group is in the workbook's Capacity "
                "by group sheet." if len(groups) > CAPACITY_ROWS else ""))
    # Short headers in a narrow page ("free" at the peak, "freed" by the actions: the line above says so).
    short = {"free_cpu_cores": "Free cores", "free_memory_gb": "Free GB", "reclaimable_cpu_cores": "Freed cores",
             "reclaimable_memory_gb": "Freed GB"}
    rows: list[list[Any]] = [[short.get(key, label) for key, label in CAPACITY_HEADERS.items()]]
    for row in shown.itertuples(index=False):
        rows.append([Paragraph(escape(str(v)), CELL) for v in row])
    widths = [0.9, 1.3, 0.6, 0.6, 2.6, 0.8, 0.8, 0.8, 0.8]
    scale = width / (sum(widths) * inch)
    return [Paragraph("Capacity remaining by group", H1), Paragraph(intro, SMALL), Spacer(1, 0.1 * inch),
            _table(rows, [w * inch * scale for w in widths])]


def _id_width(ids: Any, least: float) -> float:
    """Inches a column of server ids needs to keep each id on one line (helper-45: "bitbrains-fs-1900081"
    wrapped before its last digit), at least ``least``, at most 2 inches (longer ids wrap)."""
    texts = [str(i) for i in ids if isinstance(i, str) and i]
    widest = max((stringWidth(t, CELL_WRAP.fontName, CELL_WRAP.fontSize) for t in texts), default=0.0)
    return min(max(least, (widest + 8) / inch), 2.0)


def _size(value: Any, fmt: str) -> str:
    return "-" if value is None or pd.isna(value) else fmt.format(float(value))


WHATIF_ROWS = 22  # changed series on the what-if page (every series is in the workbook's What-if sheet)


def _whatif_page(scenario: StoredScenario, width: float) -> list[Flowable]:
    """Base vs the stored what-if: the fleet totals and the most affected series."""
    story: list[Flowable] = [Paragraph("What-if: base vs scenario", H1)]
    ran = f", run {scenario.run} UTC" if scenario.run else ""
    story.append(Paragraph(f"Scenario <b>{escape(scenario.name)}</b> (capfc risk --growth / --scenario{ran}). "
                           + escape(whatif_note("pack", "page")), BODY))
    story.append(Spacer(1, 0.1 * inch))
    rows: list[list[Any]] = [["Measure", "Base", "Scenario"]]
    rows += [[t.measure, t.base_text, t.scenario_text] for t in scenario.totals]
    story.append(_table(rows, [2.6 * inch, 2.4 * inch, 2.4 * inch], extra=[("ALIGN", (1, 1), (-1, -1), "RIGHT")]))
    story.append(Spacer(1, 0.15 * inch))
    changed = scenario.changed
    shown = changed.head(WHATIF_ROWS)
    if shown.empty:
        story.append(Paragraph(f"No series changes level or breach date ({change_text(scenario.changes)}).", BODY))
        return story
    story.append(Paragraph(f"Series {change_text(scenario.changes)}"
                           + (f"; the {len(shown)} most affected" if len(shown) else "")
                           + (f" ({len(changed) - len(shown)} more in the workbook's What-if sheet)"
                              if len(changed) > len(shown) else ""), H2))
    hosts = bool(told_columns(shown, ["hostname"]))
    table: list[list[Any]] = [["Server", *(["Hostname"] if hosts else []), "Metric", "Change", "Base risk",
                               "Scenario risk", "Base breach", "Scenario breach", "Base P", "Scenario P",
                               "Base action", "Scenario action"]]
    extra = []
    for i, r in enumerate(shown.to_dict("records"), start=1):
        table.append([r["server_id"], *([r.get("hostname") or ""] if hosts else []), r["metric"], r["change"],
                      *(Paragraph(escape(told[1]), CELL_LEVEL) if (told := side_level(r, side)) else "-"
                        for side in SIDES),
                      side_when(r, "base"), side_when(r, "scenario"), side_probability(r, "base"),
                      side_probability(r, "scenario"), r.get("base_action") or "-", r.get("scenario_action") or "-"])
        for col, side in ((3 + int(hosts), "base"), (4 + int(hosts), "scenario")):
            if (told := side_level(r, side)) is not None:
                extra += [("BACKGROUND", (col, i), (col, i), LEVEL_FILLS[told[0]]),
                          ("TEXTCOLOR", (col, i), (col, i), colors.white)]
    widths = [0.75 if hosts else 1.4, *([1.3] if hosts else []), 0.7, 0.7, 0.75, 0.85, 0.85, 0.95, 0.6, 0.75, 0.85,
              0.95]
    scale = width / (sum(widths) * inch)
    story.append(_table(table, [w * inch * scale for w in widths], extra=extra))
    return story


def _accuracy_table(data: ReportData, width: float) -> list[Flowable]:
    # Chosen = published (helper-46: "Recent level ... chosen for 0 series" beside the CLI's recent_level 1).
    accuracy = model_accuracy(data.table("backtests"), published_models(data))
    if accuracy.empty:
        return []
    rows: list[list[Any]] = [["Model", "Series", "Median MASE", "Median MAPE", "Median MAE (pts)",
                              "Interval coverage", "Chosen for"]]
    for r in accuracy.itertuples():
        rows.append([model_label(r.model), r.series, f"{r.median_mase:.2f}", f"{r.median_mape:.1%}",
                     f"{r.median_mae:.2f}", f"{r.mean_coverage:.0%}", f"{r.selected} series"])
    return [_table(rows, [width / 7] * 7)]


def _accuracy_history(data: ReportData, width: float) -> list[Flowable]:
    """Forecast vs actual over time: earlier forecast runs against the actuals since, or one line why not."""
    story: list[Flowable] = [Paragraph("Forecast vs actual over time", H2)]
    history = data.accuracy
    if history is None or history.scored.empty:
        message = not_available("forecasts") if history is None else history.message or "No run has actuals yet."
        return [*story, Paragraph(escape(message), BODY)]
    story.append(Paragraph(escape(explanation(data.settings.forecast.interval)), SMALL))
    if history.message:
        story.append(Paragraph(escape(history.message), SMALL))
    story.append(Spacer(1, 0.08 * inch))
    # The note column of the HTML and workbook is left out here: it would not fit beside the numbers.
    headers = {k: v for k, v in RUN_HEADERS.items() if k != "note"}
    widths = [0.6, 1.0, 1.15, 1.05, 1.0, 0.95, 0.6, 0.6, 0.75, 0.75, 0.95]
    scale = width / (sum(widths) * inch)
    story.append(_table([list(headers.values()), *display_rows(history.runs, headers)],
                        [w * inch * scale for w in widths], extra=[("ALIGN", (5, 1), (-1, -1), "RIGHT")]))
    story.append(Spacer(1, 0.1 * inch))
    story.append(_table([list(BUCKET_HEADERS.values()), *display_rows(history.buckets, BUCKET_HEADERS)],
                        [width / 10] * len(BUCKET_HEADERS), extra=[("ALIGN", (3, 1), (-1, -1), "RIGHT")]))
    return story


def _decorate(title: str, subtitle: str, page: tuple[float, float]) -> Any:
    def first(canvas: Canvas, _doc: Any) -> None:
        canvas.saveState()
        canvas.setFillColor(NAVY)
        canvas.rect(0, page[1] - 2.3 * inch, page[0], 2.3 * inch, stroke=0, fill=1)
        canvas.setFillColor(colors.white)
        canvas.setFont("Helvetica-Bold", 30)
        canvas.drawString(MARGIN + 0.2 * inch, page[1] - 1.25 * inch, title)
        canvas.setFont("Helvetica", 13)
        canvas.drawString(MARGIN + 0.2 * inch, page[1] - 1.7 * inch, subtitle)
        canvas.restoreState()

    def later(canvas: Canvas, doc: Any) -> None:
        canvas.saveState()
        canvas.setStrokeColor(GRID)
        canvas.line(MARGIN, page[1] - MARGIN + 6, page[0] - MARGIN, page[1] - MARGIN + 6)
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, page[1] - MARGIN + 10, title)
        canvas.drawRightString(page[0] - MARGIN, MARGIN - 14, f"Page {doc.page}")
        canvas.drawString(MARGIN, MARGIN - 14, "Internal: capacity planning")
        canvas.restoreState()

    return first, later


def build_pdf(data: ReportData, charts: dict[str, bytes]) -> bytes:
    """The executive pack as PDF bytes, landscape on ``report.page_size`` paper (A4 or US letter).

    Args:
        data: the report data.
        charts: PNG bytes by file name (``charts.render_charts``).

    Returns:
        PDF bytes: title page with the headline KPIs; executive summary (KPI cards, risk
        distribution; one line when no what-if is stored); top risks table naming the servers;
        forecast charts of the riskiest series; savings (chart and largest savings); what-if (base
        vs the stored scenario; only when one is stored); fleet heatmap and clusters; forecast
        accuracy (backtests, then forecast vs actual over time: earlier runs against the actuals
        since); assumptions appendix. Readers see section names, never the lake's table names.
    """
    cfg = data.settings.report
    page = PAGE_SIZES[cfg.page_size]
    width, body_height = _body(page)
    ranked = report_risks(data)
    items = kpis(data, ranked)
    runs = lineage(data)
    subtitle = f"Capacity planning pack: {fleet_text(data)}, data {data_period_text(data)}"
    story: list[Flowable] = []
    story.append(Paragraph(f"Generated {data.generated:%d %B %Y, %H:%M} UTC from lake {escape(data.lake_uri)}; "
                           f"{escape(runs.footer())}", SMALL))
    for warning in runs.warnings():
        story.append(Paragraph(f'<font color="#B91C1C"><b>{escape(warning)}</b></font>', BODY))
    story.append(Spacer(1, 0.25 * inch))
    story.append(_kpi_cards([k for k in items if k.key in ("already_breaching", "at_risk", "critical",
                                                            "earliest_breach", "net_savings")], width))
    # The contents line comes before the key messages: after them, a title page they fill pushed it alone
    # onto a page of its own (helper-41).
    scenario = stored_scenario(data)
    recs = data.table("recommendations")
    savings = "Savings" if recs is not None and priced_servers(recs) else "Recommended actions"
    groups = capacity_rows(data)
    sections = ["Executive summary", "Top risks and forecasts", savings,
                *(["Capacity remaining by group"] if len(groups) else []),
                *(["What-if: base vs scenario"] if scenario is not None else []),
                "Fleet utilisation", "Workload clusters", "Forecast accuracy", "Assumptions"]
    story.append(Spacer(1, 0.15 * inch))
    story.append(Paragraph("<b>In this pack:</b> " + " &middot; ".join(sections), SMALL))
    story.append(Spacer(1, 0.1 * inch))
    story.append(Paragraph("Key messages", H2))
    whatif = [headline(scenario, stale_run(data, scenario))] if scenario is not None else []
    for line in headlines(data, ranked) + whatif:
        story.append(Paragraph(escape(line), BULLET, bulletText="\u2022"))
    story = _title_page(story, width, body_height)
    story.append(PageBreak())

    story.append(Paragraph("Executive summary", H1))
    story.append(_kpi_cards(items, width))
    if scenario is None:
        story.append(Spacer(1, 0.08 * inch))
        # Plain words for the executive page; the command to store one is in the appendix (assumptions).
        story.append(Paragraph("What-if: no growth scenario was stored with these runs; the appendix "
                               "(assumptions) says how to add one.", SMALL))
    story.append(Spacer(1, 0.15 * inch))
    # The cards and the lines around them take about 3.9 inches; the chart gets the rest (A4 is the shorter paper).
    story.append(_image(charts["risk_distribution.png"], width, min(3.9 * inch, body_height - 3.95 * inch)))
    story.append(PageBreak())

    # As many as the table lists (it counted the at-risk ones among the first rows: "6" over a table of 8).
    top = _top_at_risk(ranked, cfg.top_risks) if not ranked.empty else ranked
    shown = len(top)
    # Stale rows are listed last, but not counted at risk: the heading says so (helper-50: "the 8 riskiest" under
    # tiles of 6 critical).
    stale = int((top["status"] == "stale").sum()) if shown and "status" in top.columns else 0
    stale_note = f" ({stale} of them stale: levels as of their last data)" if stale else ""
    riskiest = "the riskiest series" if shown == 1 else f"the {shown} riskiest series"
    story.append(Paragraph(f"Top risks: {riskiest}{stale_note}" if shown else "Top risks", H1))
    story.append(Paragraph("Riskiest first: level, then the soonest forecast breach. Days count from the last "
                           "observed day; P(breach) is the probability of at least one day above the threshold "
                           "within the horizon.", SMALL))
    story.append(Spacer(1, 0.1 * inch))
    story.extend(_top_risks(data, ranked, width))
    story.append(Spacer(1, 0.2 * inch))
    chart = _image(charts["forecast_top_risks.png"], width, body_height - 0.3 * inch)
    if shown > cfg.chart_series:  # the chart draws fewer series than the table lists: say which, on its page
        story.append(KeepTogether([Paragraph(f"Forecast vs actual of the {cfg.chart_series} riskiest of these "
                                             f"{shown} series", SMALL), chart]))
    else:
        story.append(chart)
    story.append(PageBreak())

    if recs is not None and priced_servers(recs):
        story.append(_image(charts["savings_by_action.png"], width, min(3.0 * inch, body_height - 4.1 * inch)))
    story.extend(_savings_table(data, width))
    story.append(PageBreak())
    if len(groups):
        story.extend(_capacity_page(groups, width))
        story.append(PageBreak())
    if scenario is not None:
        story.extend(_whatif_page(scenario, width))
        story.append(PageBreak())
    story.append(_image(charts["fleet_heatmap.png"], width, body_height))
    story.append(PageBreak())
    story.append(_image(charts["cluster_map.png"], width, body_height))
    story.append(PageBreak())
    story.append(_image(charts["backtest_accuracy.png"], width, 3.8 * inch))
    story.append(Spacer(1, 0.15 * inch))
    story.extend(_accuracy_table(data, width))
    story.extend(_accuracy_history(data, width))
    story.append(PageBreak())

    story.append(Paragraph("Appendix: assumptions", H1))
    rows: list[list[Any]] = [["Assumption", "Value", "Note"]]
    rows += [[a, Paragraph(keep_units(escape(v)), CELL), Paragraph(keep_units(escape(n)), CELL)]
             for a, v, n in assumptions(data)]
    story.append(KeepTogether(_table(rows, [2.0 * inch, 3.4 * inch, width - 5.4 * inch])))
    # The what-if's absence is said on the summary page; the rest by section name, never by table name.
    missing = {t: m for t, m in data.missing.items() if t != "risk_comparison"}
    if missing:
        story.append(Spacer(1, 0.2 * inch))
        story.append(Paragraph("Sections without data: " + "; ".join(f"{table_title(t)} ({m})"
                                                                     for t, m in missing.items()), SMALL))

    buffer = io.BytesIO()
    first, later = _decorate(cfg.title, subtitle, page)
    doc = SimpleDocTemplate(buffer, pagesize=page, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=MARGIN, title=cfg.title, author="AWS-CapacityForecaster",
                            subject=subtitle)
    previous = rl_config.useA85
    # ASCII85-encoding the chart images runs in pure Python without reportlab's C accelerator and
    # takes most of the build time; binary streams are smaller too. Restored for other users.
    rl_config.useA85 = 0
    try:
        doc.build(story, onFirstPage=first, onLaterPages=later)
    finally:
        rl_config.useA85 = previous
    return buffer.getvalue()


__all__ = ["build_pdf"]
