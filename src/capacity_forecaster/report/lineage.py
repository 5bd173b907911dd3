"""Run lineage of the tables a report reads: which forecast and risk runs wrote them, and whether they agree."""

from __future__ import annotations

from dataclasses import dataclass

from capacity_forecaster.report.data import ReportData
from capacity_forecaster.storage.manifest import behind, producing_run


@dataclass(frozen=True)
class Lineage:
    """The upstream runs behind a report.

    Attributes:
        forecast_run: run_id of the forecast run that wrote the lake's current ``forecasts`` (None: unknown).
        risk_run: run_id of the risk run that wrote the current ``server_risk`` (None: unknown or absent).
        risk_forecast_run: run_id of the forecast run that risk run read (None: unknown).
        stale_scenarios: stored what-if scenario -> the forecast run it was computed on, for every
            scenario computed on another forecast run than the lake's current one.
        etl_behind: (the ETL run that wrote the lake's processed metrics, the one the forecasts were made from)
            when the metrics changed since (``manifest.behind``); None when current or unknown.
    """

    forecast_run: str | None
    risk_run: str | None
    risk_forecast_run: str | None
    stale_scenarios: dict[str, str]
    etl_behind: tuple[str, str] | None = None

    @property
    def consistent(self) -> bool:
        """False when the risk tables were computed from another forecast run than the lake's forecasts."""
        known = None not in (self.forecast_run, self.risk_forecast_run)
        return not known or self.forecast_run == self.risk_forecast_run

    def warnings(self) -> list[str]:
        """Sentences a report shows prominently when its tables come from different upstream runs."""
        out = []
        if not self.consistent:
            out.append(f"Warning: the breach risk and recommendations come from risk run {self.risk_run}, which used "
                       f"forecast run {self.risk_forecast_run}, but the forecasts shown are from forecast run "
                       f"{self.forecast_run}. Run capfc risk (or capfc run) to bring them in line.")
        if self.etl_behind is not None:
            # helper-72: capfc risk on forecasts older than the newest ETL run read "upper bound crosses ...
            # (day -19)", with one log line and nothing in the pack.
            out.append(f"Warning: the forecasts (forecast run {self.forecast_run}) were made from processed metrics "
                       f"of ETL run {self.etl_behind[1]}, but the lake's are from ETL run {self.etl_behind[0]}: the "
                       "forecasts start before the newest days, so breach dates and days to breach are off. Run "
                       "capfc forecast and capfc risk (or capfc run) to bring them in line.")
        for name, run in self.stale_scenarios.items():
            out.append(f"Warning: what-if scenario {name} was computed on forecast run {run}, not on the current "
                       f"forecast run {self.forecast_run}; re-run capfc risk for it to refresh it.")
        return out

    def footer(self) -> str:
        """``forecast run ab12.., risk run cd34.. (on forecast run ab12..)`` for report footers."""
        risk = "none" if self.risk_run is None else self.risk_run
        used = "" if self.risk_forecast_run is None else f" (on forecast run {self.risk_forecast_run})"
        return f"forecast run {self.forecast_run or 'unknown'}, risk run {risk}{used}"


def lineage(data: ReportData) -> Lineage:
    """The lineage of ``data``'s forecast and risk tables, from the run manifests and table versions.

    Returns:
        The Lineage (run ids None where no manifest names a table's current version).
    """
    forecast = producing_run(data.runs, "forecasts", data.versions.get("forecasts"))
    risk = producing_run(data.runs, "server_risk", data.versions.get("server_risk"))
    forecast_id = None if forecast is None else str(forecast["run_id"])
    used = None if risk is None else (risk.get("inputs") or {}).get("forecast")
    stale: dict[str, str] = {}
    index = data.table("risk_scenarios")
    if index is not None and forecast_id is not None and "forecast_run_id" in index.columns:
        for row in index.dropna(subset=["forecast_run_id"]).to_dict("records"):
            if row["forecast_run_id"] != forecast_id:
                stale[str(row["scenario"])] = str(row["forecast_run_id"])
    etl = producing_run(data.runs, "metrics", data.versions.get("metrics"))
    read = ((forecast or {}).get("inputs") or {}).get("etl")
    return Lineage(forecast_id, None if risk is None else str(risk["run_id"]), used, stale,
                   behind(data.runs, etl, read))
