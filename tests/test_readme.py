"""The README's set-up commands are the ones CI runs."""
from conftest import ROOT


def test_ci_runs_the_readme_test_commands():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    start = ci.index("# README: run the tests") + 1
    commands = [line for line in ci[start:] if line.strip()]
    readme = (ROOT / "README.md").read_text()
    assert commands, "no commands after the marker in .ci/run"
    for command in commands:
        assert f"\n{command}\n" in readme, f"README.md lacks the CI command: {command}"
