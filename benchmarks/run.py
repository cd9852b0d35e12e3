"""Run the benchmark modules: ``python -m benchmarks.run [--n N] [--only NAME] [-- OPTIONS]``.

Every ``benchmarks/bench_*.py`` module has ``main(argv: list[str]) -> int``. ``--n`` is
passed to each of them; options after ``--`` are passed on only together with
``--only`` (the modules take different options), e.g.
``python -m benchmarks.run --only bench_mapper -- --profile``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def bench_modules() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args:
        args, extra = args[: args.index("--")], args[args.index("--") + 1 :]
    parser = argparse.ArgumentParser(prog="benchmarks.run", description="Run every bench_* module.")
    parser.add_argument("--n", type=int, help="size passed to every module as --n")
    parser.add_argument("--only", choices=bench_modules(), help="run only this module")
    options = parser.parse_args(args)
    if extra and not options.only:
        parser.error("options after -- need --only (the modules take different options)")
    status = 0
    for name in bench_modules():
        if options.only and name != options.only:
            continue
        print(f"== benchmarks.{name}", flush=True)
        module_args = (["--n", str(options.n)] if options.n is not None else []) + extra
        module = importlib.import_module(f"benchmarks.{name}")
        status = max(status, int(module.main(module_args)))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
