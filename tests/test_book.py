"""The Jupyter Book's sources: configuration, table of contents, pages and figures.
(The book is built from a real pipeline run in tests/test_pipeline.py.)"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from mafer.pipeline.graph import RELEASED_TOC, book_sources
from mafer.reproduce import load_profile

ROOT = Path(__file__).resolve().parent.parent


def toc_files(node) -> list[str]:
    if isinstance(node, dict):
        return ([node["file"]] if "file" in node else []) + [f for v in node.values() for f in toc_files(v)]
    if isinstance(node, list):
        return [f for item in node for f in toc_files(item)]
    return []


def test_config_renders_notebooks_without_running_them_and_skips_the_venv():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True
    assert {".venv", "results", "_build"} <= set(config["exclude_patterns"])


def released_profile() -> dict:
    """The released profile as `mafer reproduce` resolves it (with checkpoints found)."""
    return {**load_profile("released"), "released": {}}


@pytest.mark.parametrize("toc_file, profile", [("_toc.yml", lambda: load_profile("demo")),
                                               (RELEASED_TOC, released_profile)])
def test_every_toc_entry_is_a_page_or_a_notebook_the_pipeline_publishes(toc_file, profile):
    toc = yaml.safe_load((ROOT / toc_file).read_text())
    files = [toc["root"]] + toc_files(toc["parts"])
    published = {f"book/generated/{Path(p).stem}" for p in book_sources(profile())}
    generated = [f for f in files if f.startswith("book/generated/")]
    assert set(generated) == published
    for f in set(files) - set(generated):
        assert (ROOT / f"{f}.md").is_file(), f"{f}.md named in _toc.yml is missing"
    assert "book/generated/" in (ROOT / ".gitignore").read_text().splitlines()


def test_pages_glue_numbers_only_from_published_notebooks_and_type_none():
    published = set(book_sources(load_profile("demo"))) | set(book_sources(released_profile()))
    for page in (ROOT / "book").glob("*.md"):
        text = page.read_text()
        for doc, key, fmt in re.findall(r"\{glue:text\}`([^`:]+)::(\w+):([^`]+)`", text):
            assert doc.startswith("generated/") and doc.removeprefix("generated/") in published, (page, doc)
        # this run's numbers come from glue roles: no percentages typed into the prose
        prose = re.sub(r"\{glue:text\}`[^`]*`", "", text)
        assert not re.search(r"\d+\.\d+ ?%", prose), f"{page.name}: a typed-in percentage"


def test_method_figure_exists_and_is_valid_svg():
    svg = ROOT / "book" / "figures" / "method.svg"
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "figures/method.svg" in (ROOT / "book" / "index.md").read_text()


def test_the_reproduce_page_covers_real_data_weights_gpus_and_clusters():
    text = (ROOT / "book" / "reproduce.md").read_text()
    for needle in ("--profile paper", "base_weights=", "senet50_ft_weight.pkl", "fer2013.csv",
                   "list_patition_label.txt", "gpu=1", "--executor slurm", "--dry-run"):
        assert needle in text, needle
