"""A step program for tests/test_stay.py: ``python -m tests.stay_step --say WORD [--fail]``
prints WORD on stdout and stderr, or fails with bad input (exit code 3). Its warm-up is an
object whose ``close()`` prints ``closed`` on stderr."""

from __future__ import annotations

import argparse
import sys

from steps import runner
from steps.core.errors import InputError


class Warm:
    def close(self) -> None:
        print("closed", file=sys.stderr, flush=True)


def work(args: argparse.Namespace, warm: Warm | None) -> None:
    if args.fail:
        raise InputError("probe", f"{args.say} failed as asked.")
    print(f"{args.say} warm={warm is not None}", flush=True)
    print(f"{args.say} on stderr", file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--say", required=True)
    p.add_argument("--fail", action="store_true")
    p.add_argument("--job-id", default="")
    runner.run("probe", p.parse_args(), work, warm_up=lambda args: Warm(), parse=p.parse_args)


if __name__ == "__main__":
    main()
