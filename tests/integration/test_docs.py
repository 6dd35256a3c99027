"""The documentation stays true: generated pages current, the site builds strictly, README a
front page whose test command is the one CI runs, and every path and module it names real."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: Hand-written pages (the generated ones under docs/reference/ are checked by docs_gen).
PAGES = [README, *sorted(p for p in DOCS.rglob("*.md") if "reference" not in p.parts)]


def _run(*command: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def test_the_generated_pages_are_current():
    """docs/reference/*.md (from the settings classes and the typer app) and the plots."""
    out = _run(sys.executable, str(ROOT / "tools" / "docs_gen.py"), "--check")
    assert out.returncode == 0, (
        f"generated documentation is stale; run `python tools/docs_gen.py`:\n{out.stderr}"
    )


def test_the_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (mkdocs-material, in the dev extra)")
    out = _run(
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--config-file",
        str(ROOT / "mkdocs.yml"),
        "--site-dir",
        str(tmp_path / "site"),
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move the detail into docs/"


def test_readme_links_point_at_files_that_exist():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link.split("#", 1)[0] for link in links if not re.match(r"[a-z]+:", link)]
    assert any(link.startswith("docs/") for link in local), "README links into no docs page"
    missing = [link for link in local if link and not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_ci_runs_the_test_command_readme_shows():
    """``.ci/run`` reads the test command from README (the second line after the marker):
    run its own extraction and check that it finds README's shown command, and that the
    command installs nothing ``.ci/run`` does not."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    extraction = re.search(r"TEST_CMD=\$\((.+ README\.md)\)", ci)
    assert extraction, ".ci/run no longer reads its test command from README.md"
    found = _run("bash", "-c", extraction.group(1)).stdout.strip()
    lines = README.read_text(encoding="utf-8").splitlines()
    marker = lines.index("<!-- test-command -->")
    assert lines[marker + 1].startswith("```"), "the marker must be followed by a code block"
    assert found == lines[marker + 2].strip() and "pytest" in found, found

    def extras(text: str) -> set[str]:
        return {e for group in re.findall(r'-e "\.\[([^]]*)\]"', text) for e in group.split(",")}

    assert extras(found) <= extras(ci), "the test command installs extras .ci/run does not"


def _spans() -> list[tuple[str, str]]:
    return [
        (page.name, span)
        for page in PAGES
        for span in re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8"))
    ]


def test_the_paths_the_docs_name_exist():
    path = re.compile(r"(ollang|tests|tools|bench|docs|\.ci)/[\w./-]*")
    named = {
        (page, span)
        for page, span in _spans()
        if path.fullmatch(span)
        # made at run time (bench/.venv-litellm), not in the repository
        and not any(part.startswith(".") and part != ".ci" for part in Path(span).parts)
    }
    assert len(named) > 20
    missing = sorted(f"{page}: {span}" for page, span in named if not (ROOT / span).exists())
    assert not missing, f"the docs name paths that do not exist: {missing}"


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            found: object = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_the_modules_the_docs_name_exist():
    dotted = re.compile(r"(ollang(?:\.\w+)+)(?:\(.*\))?")
    named = {(page, m.group(1)) for page, span in _spans() if (m := dotted.fullmatch(span))}
    assert len(named) > 5
    missing = []
    for page, name in sorted(named):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as err:
            missing.append(f"{page}: {name} ({err})")
    assert not missing, f"the docs name modules or objects that do not exist: {missing}"


def test_the_variables_the_docs_name_exist():
    """Every ``OLLANG_*`` / ``OLLAMA_*`` variable a page names is in the generated
    configuration reference, or is one the tests and CI read."""
    reference = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    harness = (ROOT / ".ci" / "run").read_text(encoding="utf-8") + "".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py")
    )
    variable = re.compile(r"(?:OLLANG|OLLAMA)_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])")
    named = {
        (page.name, name)
        for page in PAGES
        for name in variable.findall(page.read_text(encoding="utf-8"))
    }
    unknown = sorted(
        f"{page}: {name}"
        for page, name in named
        if f"`{name}`" not in reference and not re.search(rf"\b{name}\b", harness)
    )
    assert not unknown, f"the docs name variables ollang does not read: {unknown}"
