"""The layers stay visible: no import cycle, the layer rules hold, no module grows too long."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

MAX_LINES = 400


def test_no_import_cycle_and_the_layer_rules_hold():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py"), str(ROOT)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cycles: 0" in done.stdout and "layer-rule breaks: 0" in done.stdout


def test_the_graph_script_finds_a_cycle_and_a_broken_rule(tmp_path):
    for package in ("steps", "pipeline"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "steps" / "a.py").write_text("from steps import b\n")
    (tmp_path / "steps" / "b.py").write_text("def f():\n    import steps.a\n    import pipeline.x\n")
    (tmp_path / "pipeline" / "x.py").write_text("")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "cycle: steps.a <-> steps.b" in done.stdout
    assert "rule: steps.b -> pipeline.x (steps never imports pipeline)" in done.stdout


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in [*ROOT.glob("steps/**/*.py"), *ROOT.glob("pipeline/**/*.py")]
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
