"""Every Python package of the repository is listed for installation (pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_installed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for pkg, d in mapping.items():
        base = ROOT / d
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((pkg, *rel)))
    # sub-packages of a mapped package that are themselves mapped count once
    assert found == listed, f"not installed: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"


def test_console_script_points_at_the_cli():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert proj["scripts"]["lsr"] == "lsr.cli:main"
    from lsr.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    assert {"index", "search", "info", "eval"} <= set(sub)
