"""The documentation site (mkdocs.yml, docs/) builds with ``mkdocs build --strict``: no broken
link or anchor, no page left out of the navigation, no docstring that mkdocstrings cannot
render, and every public name of ``sigprop.api.PUBLIC`` in the API reference."""

import os
import re
import subprocess
import sys
from pathlib import Path

from sigprop.api import PUBLIC

ROOT = Path(__file__).parent.parent


def test_docs_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = done.stdout + done.stderr
    assert "No module named mkdocs" not in log, (
        "mkdocs is not installed: pip install -e '.[docs]' (the test extra includes it)")
    warnings = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert done.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]

    # every public name is rendered (a name without a docstring would be left out silently)
    html = "".join(page.read_text(encoding="utf-8") for page in (site / "api").rglob("*.html"))
    anchors = set(re.findall(r'id="(sigprop\.[\w.]+)"', html))
    missing = sorted(name for name, module in PUBLIC.items() if f"{module}.{name}" not in anchors)
    assert not missing, f"public names missing from the rendered API reference: {missing}"
    assert (site / "tutorial" / "index.html").exists()
    assert (site / "images" / "phase_diagram_alpha_sigma_w.png").exists()
