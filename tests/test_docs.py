"""The documentation: every tutorial runs, the site builds without warnings, pages stay true."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
NEEDS = {"nir_to_snntorch.py": "nir", "brian2_network.py": "brian2"}


def test_every_tutorial_script_has_a_page_that_includes_it():
    assert len(TUTORIALS) >= 5
    pages = "\n".join(p.read_text() for p in (DOCS / "tutorials").glob("*.md"))
    nav = (ROOT / "mkdocs.yml").read_text()
    for script in TUTORIALS:
        assert f'--8<-- "docs/tutorials/{script.name}"' in pages, f"{script.name} is on no page"
    for page in (DOCS / "tutorials").glob("*.md"):
        assert f"tutorials/{page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(script, tmp_path):
    extra = NEEDS.get(script.name)
    if extra and importlib.util.find_spec(extra) is None:
        pytest.skip(f"needs the {extra} extra")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_rules_page_lists_every_rule():
    from neurolearn.rules import RULES

    page = (DOCS / "concepts" / "rules.md").read_text()
    for name, rule in RULES.items():
        row = re.search(rf"^\| `{re.escape(name)}` \|.*\| (.+) \|$", page, re.M)
        assert row, f"rule {name} is missing from docs/concepts/rules.md"
        needs = rule.requires.describe().split("  [")[0]
        assert row.group(1).strip() == needs, f"{name}: the page says {row.group(1)!r}, the code {needs!r}"


def test_readme_first_hour_stays_inside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "source .venv/bin/activate" in readme
    assert "../shared" not in readme and "/work/" not in readme
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_site_builds_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip('the docs extra is not installed (pip install -c constraints.txt -e ".[docs]")')
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "training" / "index.html").exists()
