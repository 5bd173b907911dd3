"""Breach risk, workload clusters, right-sizing, consolidation and what-if (pure functions over frames).

The stage entry point is ``capacity_forecaster.risk.stage.run_risk``; see docs/risk.md for the methods.
"""
