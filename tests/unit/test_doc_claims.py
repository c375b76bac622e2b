"""The docs say only what is true: every repository path they name exists, the settings tables are the
launcher's own, and the numbers they quote about the test suite match it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", ROOT / "CLAUDE.md", *sorted((ROOT / "docs").glob("*.md"))]


def _top_entries() -> set[str]:
    """The repository's own top-level names: git's list where there is one, so that ignored local folders
    (.gpu from tools/gpu/payload.py, the venvs) do not turn the docs' mentions of them into claims."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout:
        return {line.split("/")[0] for line in listed.stdout.splitlines()}
    return {p.name for p in ROOT.iterdir() if p.name != ".git"}


TOP = _top_entries()


def named_paths(text: str) -> list[str]:
    """Backticked repository paths: a top-level entry, then more of a path; no placeholders."""
    out = []
    for token in re.findall(r"`([^`\s]+)`", text):
        path = token.split(":")[0].rstrip(".,;)")
        if path.split("/")[0] in TOP and ("/" in path or path in TOP) and not re.search(r"[<>{}*$|]", path):
            out.append(path)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_named_path_exists(doc):
    """A file or folder the docs name in backticks should exist in the repository."""
    missing = [p for p in named_paths(doc.read_text()) if not (ROOT / p).exists()]
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_path_check_sees_paths():
    """The check above should really find paths (docs without any would make it pass vacuously)."""
    assert "deploy/base/statefulset.yaml" in named_paths((ROOT / "docs" / "development.md").read_text())
    assert sum(len(named_paths(doc.read_text())) for doc in DOCS) > 20


def test_settings_tables_are_generated():
    """Every row `glm-image-sglang env` prints (name, default, meaning) should be in docs/configuration.md
    verbatim."""
    table = subprocess.run(
        [sys.executable, "-m", "glm_image_sglang", "env"], capture_output=True, text=True, check=True
    ).stdout
    doc = (ROOT / "docs" / "configuration.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    stale = [row.split("|")[1].strip() for row in rows if row not in doc]
    assert rows and not stale, f"docs/configuration.md's rows for {stale} differ: paste `glm-image-sglang env`"


def test_readme_settings_agree_with_the_code():
    """The README's short settings table should quote the real defaults."""
    from glm_image_sglang.settings import FIELDS, GATEWAY_FIELDS

    readme = (ROOT / "README.md").read_text()
    for field in (*FIELDS, *GATEWAY_FIELDS):
        row = re.search(rf"^\| `{field.env}` \| `([^`]*)` \|", readme, re.M)
        if row:
            assert row[1] == field.default, f"README says {field.env} defaults to {row[1]}, the code {field.default}"


def test_readme_is_short():
    """The README is the first hour: the rest lives in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_hostile_corpus_size_quoted_right():
    """docs/development.md quotes the size of the gateway's hostile-request corpus: it should be the corpus's."""
    sys.path.insert(0, str(ROOT / "tests" / "gateway"))
    from test_hostile import CORPUS

    quoted = re.search(r"a (\d+)-request hostile corpus", (ROOT / "docs" / "development.md").read_text())
    assert quoted and int(quoted[1]) == len(CORPUS)


def test_documented_commands_exist():
    """Every `glm-image-sglang NAME` the docs tell a user to run should be a command the CLI has (a quoted log
    line's `glm-image-sglang plugin:` is a prefix, not a command)."""
    from glm_image_sglang.cli import LAUNCHER_COMMANDS, PROGRAMS

    said = set()
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            if not line.lstrip().startswith("#"):  # headings and shell comments are prose
                said |= set(re.findall(r"(?<![/\w-])glm-image-sglang ([a-z][a-z-]*)\b(?!:)", line))
    unknown = said - set(LAUNCHER_COMMANDS) - set(PROGRAMS)
    assert said and not unknown, f"the docs name commands the CLI lacks: {unknown}"
