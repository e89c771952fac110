"""The tutorial notebook (docs/tutorial.ipynb) runs from top to bottom."""

import json
from pathlib import Path

import matplotlib

NOTEBOOK = Path(__file__).parent.parent / "docs" / "tutorial.ipynb"


def test_tutorial_notebook_runs(monkeypatch, tmp_path):
    """Every code cell, in order, in one namespace (as a kernel would run them), without
    Jupyter; the stored outputs hold no error."""
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    notebook = json.loads(NOTEBOOK.read_text())
    cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert len(cells) >= 6
    namespace: dict = {}
    for number, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"<cell {number}>", "exec"), namespace)
        assert not any(output.get("output_type") == "error" for output in cell["outputs"])
    assert namespace["finite"]["depth"] == 48
    assert namespace["critical"]["closest_on_edge_of_chaos"] is not None
