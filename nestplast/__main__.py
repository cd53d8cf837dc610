"""``python -m nestplast COMMAND ...``: a thin dispatcher to the command of each concept."""

import importlib
import sys

COMMANDS = {
    "build": ("nestplast.commands.build", "compile (or find in the cache) a NESTML rule as a NEST module"),
    "search": ("nestplast.commands.search", "CMA-ES search of a rule's parameters (also: python -m nestplast.search)"),
    "report": ("nestplast.commands.report", "summarise and plot a run directory (search, filter or inference)"),
    "infer": ("nestplast.commands.infer",
              "fit a rule's coefficients to recorded spikes and weights (also: python -m nestplast.infer)"),
    "infer-demo": ("nestplast.commands.infer_demo", "recover a known rule from a recording generated in NEST"),
    "prune": ("nestplast.commands.prune", "noise-driven pruning of a recurrent rate network"),
    "filter": ("nestplast.commands.filter",
               "rule families by simulation-based inference (fSBI; the families extra; also: python -m nestplast.filter)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        from . import __version__

        print(f"nestplast {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
        from .cli import as_invoked

        print(f"usage: {as_invoked('python -m nestplast')} COMMAND [options]\n\ncommands:\n" + "\n".join(lines),
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
