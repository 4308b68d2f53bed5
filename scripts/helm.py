#!/usr/bin/env python3
"""`helm` for machines without the helm binary: the commands this project uses, on the Helm v4
Go SDK that the helm-python-sdk package embeds (real Helm: same template engine, same linter).

    python scripts/helm.py version
    python scripts/helm.py lint [--strict] [--kube-version v1.35.0] [-f values.yaml] CHART
    python scripts/helm.py template [NAME] CHART [-n NS] [-f values.yaml] [--set k=v] [--dependency-update]
    python scripts/helm.py dependency list CHART

`template` prints what `helm template` prints (`---` and `# Source:` before each document), so
tools that shell out to helm, such as checkov's helm framework, run on it unchanged (the tests
put a `helm` wrapper around this file on their PATH).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import helm_python as helm
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("helm-python-sdk is not installed: run `make setup` (it is in the `dev` extra)")


def _values(files: list[str], sets: list[str]) -> dict:
    merged: dict = {}
    for path in files:
        _merge(merged, helm.values_from_yaml(Path(path).read_text()))
    for expression in sets:
        _merge(merged, helm.parse_set_string(expression))
    return merged


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def render(chart: str, values: dict | None = None, name: str = "release-name",
           namespace: str = "default") -> str:
    """`helm template` output for CHART."""
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(values or {}, name=name, namespace=namespace,
                                  is_install=True)
    out = []
    for source in sorted(manifests):
        if source.endswith("NOTES.txt"):
            continue
        for document in manifests[source].split("\n---"):
            body = document.strip("\n")
            if body.strip() and any(not line.lstrip().startswith("#")
                                    for line in body.splitlines() if line.strip()):
                out.append(f"---\n# Source: {source}\n{body}\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version")
    lint = sub.add_parser("lint")
    lint.add_argument("chart")
    lint.add_argument("--strict", action="store_true")
    lint.add_argument("--kube-version")
    lint.add_argument("-f", "--values", action="append", default=[])
    lint.add_argument("--set", action="append", default=[])
    template = sub.add_parser("template")
    template.add_argument("args", nargs="+", metavar="[NAME] CHART")
    template.add_argument("-n", "--namespace", default="default")
    template.add_argument("-f", "--values", action="append", default=[])
    template.add_argument("--set", action="append", default=[])
    template.add_argument("--dependency-update", action="store_true", help="no-op: no dependencies")
    dependency = sub.add_parser("dependency")
    dependency.add_argument("action", choices=["list"])
    dependency.add_argument("chart")
    args = parser.parse_args(argv)

    if args.command == "version":
        # the format checkov parses: version.BuildInfo{Version:"v4.2.3", …}
        print(f'version.BuildInfo{{Version:"{helm.helm_sdk_version()}", '
              f'HelmCSDK:"{helm.helm_c_version()}"}}')
        return 0
    if args.command == "dependency":
        for dep in helm.dependency_list(args.chart):
            print(f"{dep['name']}\t{dep['version']}\t{dep['repository']}\t{dep['status']}")
        return 0
    if args.command == "lint":
        report = helm.lint(args.chart, _values(args.values, args.set), strict=args.strict,
                           kube_version=args.kube_version)
        names = {1: "INFO", 2: "WARNING", 3: "ERROR"}
        for message in report["messages"]:
            print(f"[{names.get(message['severity'], 'UNKNOWN')}] {message['path']}: {message['error']}")
        for error in report["errors"]:
            print(f"Error: {error}", file=sys.stderr)
        failed = report["errors"] or any(m["severity"] >= (2 if args.strict else 3)
                                         for m in report["messages"])
        print(f"1 chart(s) linted, {1 if failed else 0} chart(s) failed")
        return 1 if failed else 0
    *name, chart = args.args
    try:
        sys.stdout.write(render(chart, _values(args.values, args.set),
                                name=name[0] if name else "release-name", namespace=args.namespace))
    except helm.HelmError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
