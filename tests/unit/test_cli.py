"""The command line a newcomer meets: --help names every command, a missing optional package is a one-line
error that says what to do, never a traceback."""

import subprocess
import sys
import textwrap

import pytest

from glm_image_sglang.cli import LAUNCHER_COMMANDS, PROGRAMS

pytestmark = pytest.mark.unit


def cli(*args: str, block: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter; `block`: a top-level package made unimportable there."""
    code = textwrap.dedent(f"""
        import sys
        if {block!r}:
            sys.modules[{block!r}] = None  # `import {block}` now fails as if it were not installed
        from glm_image_sglang.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    """--help should name every command and sub-program with its one line."""
    out = cli("--help").stdout
    for name, what in {**LAUNCHER_COMMANDS, **{k: v[1] for k, v in PROGRAMS.items()}}.items():
        assert f"  {name}" in out and what in out, name


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_each_program_has_help(name):
    """Every sub-program should answer --help itself."""
    proc = cli(name, "--help")
    assert proc.returncode == 0 and f"glm-image-sglang {name}" in proc.stdout, proc.stderr


def test_missing_package_says_what_to_install():
    """random-model without torch should say what to install or where to run it, in one line, exit 2."""
    proc = cli("random-model", "glm-image", "/tmp/never-made", block="torch")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "ERROR: `glm-image-sglang random-model` needs the Python package 'torch', which is not installed here. "
        "Run it inside the image (docker run --rm IMAGE random-model ...), or pip install torch diffusers transformers."
    )


def test_unknown_command_names_the_real_ones():
    """A mistyped command should list every command there is."""
    proc = cli("randm-model")
    assert proc.returncode == 2 and "'random-model'" in proc.stderr and "'download'" in proc.stderr
