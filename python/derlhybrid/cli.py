"""The ``derl`` command: a thin layer over the library.

User mistakes (bad options, unavailable backend) print one line ``derl: error: ...`` and
exit with code 2; nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .kernels import BackendUnavailable, available_backends


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"derl: error: {message} (see `derl --help`)\n")


def _cmd_info(args) -> int:
    import platform

    import numpy

    print(f"derlhybrid {__version__}")
    print(f"python {platform.python_version()}, numpy {numpy.__version__}")
    from .kernels import backends

    print(f"default backend: {backends.resolve(None)}  (DERL_BACKEND=auto|python|julia)")
    for st in available_backends():
        mark = "available" if st.available else "unavailable"
        print(f"  {st.name:<7} {mark:<12} {st.detail}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import stencil_demo

    stencil_demo(backend=args.backend, size=args.size, repeats=args.repeats)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="derl", description="Learning physical systems through derivatives.")
    p.add_argument("--version", action="version", version=f"derlhybrid {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser("info", help="version, backends and why any is unavailable")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser(
        "demo", help="stencil demo: convergence table and a timed 6th-order derivative"
    )
    demo.add_argument("--backend", default=None, help="auto | python | julia")
    demo.add_argument("--size", type=int, default=2048, help="side of the timed square field")
    demo.add_argument("--repeats", type=int, default=5, help="timing repetitions (best taken)")
    demo.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, BackendUnavailable) as exc:
        print(f"derl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("derl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
