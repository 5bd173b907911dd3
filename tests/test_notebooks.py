"""The five notebooks run top to bottom on a small lake, through the public API only, outputs stripped in git."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("0*.ipynb"))


def test_the_five_notebooks_are_there_with_outputs_stripped() -> None:
    assert [p.stem for p in NOTEBOOKS] == ["01_data_generation", "02_etl", "03_forecasting", "04_risk_analysis",
                                           "05_visualization"]
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), path.name
        source = "".join("".join(c["source"]) for c in code)
        assert "capacity_forecaster." not in source.replace("import capacity_forecaster as cf", ""), (
            f"{path.name} reaches past the public API")


def test_the_notebooks_execute_in_order(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
        outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], path.name
        assert any(o.output_type in ("execute_result", "display_data") for o in outputs), path.name
    assert (tmp_path / "notebook-lake" / "reports" / "capacity_report.pdf").exists()
