"""promtool (Debian's prometheus package) on rule and rule-test files written to a temp dir."""

import pathlib
import subprocess
import tempfile

import yaml


def run(*args, cwd=None):
    """(ok, output) of one promtool command."""
    done = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)
    return done.returncode == 0, done.stdout + done.stderr


def check_rules(document):
    """`promtool check rules` of a rule file given as a document."""
    with tempfile.TemporaryDirectory(prefix="obs-promtool-") as tmp:
        path = pathlib.Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return run("check", "rules", str(path))


def test_rules(rules_document, tests_document):
    """`promtool test rules` of a test file against a rule file (its rule_files is rules.yaml)."""
    with tempfile.TemporaryDirectory(prefix="obs-promtool-") as tmp:
        (pathlib.Path(tmp) / "rules.yaml").write_text(yaml.safe_dump(rules_document, sort_keys=False))
        (pathlib.Path(tmp) / "tests.yaml").write_text(yaml.safe_dump(tests_document, sort_keys=False))
        return run("test", "rules", "tests.yaml", cwd=tmp)
