"""Every Python package of the repository is listed for installation (pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_installed():
    """Every directory with Python modules or data under a mapped package is listed in ``packages``,
    and every data file there is matched by a ``package-data`` pattern."""
    import fnmatch

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    patterns = cfg.get("package-data", {})
    found = set()
    unmatched = []
    for pkg, d in mapping.items():
        base = ROOT / d
        for folder in [base, *(p for p in base.rglob("*") if p.is_dir())]:
            if "__pycache__" in folder.parts or folder.name.startswith("."):
                continue
            rel = folder.relative_to(base).parts
            if any(".".join((pkg, *rel[:i])) in mapping and i for i in range(1, len(rel) + 1)):
                continue  # a mapped sub-package is walked from its own directory
            name = ".".join((pkg, *rel))
            files = [f for f in folder.iterdir() if f.is_file() and not f.name.endswith(".pyc")]
            if (folder / "__init__.py").is_file() or files:
                found.add(name)
            for f in files:
                if f.suffix != ".py" and not any(fnmatch.fnmatch(f.name, pat) for pat in patterns.get(name, ())):
                    unmatched.append(str(f.relative_to(ROOT)))
    # sub-packages of a mapped package that are themselves mapped count once
    assert found == listed, f"not installed: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"
    assert not unmatched, f"data files that no package-data pattern installs: {unmatched}"


def test_build_metadata():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["license"] == "Apache-2.0"   # an SPDX expression, not the deprecated table
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in data["build-system"]["requires"])


def test_console_script_points_at_the_cli():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert proj["scripts"]["lsr"] == "lsr.cli:main"
    from lsr.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    assert {"index", "search", "info", "eval"} <= set(sub)
