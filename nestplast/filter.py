"""``python -m nestplast.filter EXPERIMENT``: the command lives in :mod:`nestplast.commands.filter`,
the filter itself in :mod:`nestplast.families`, its plots and tables in :mod:`nestplast.analysis.families`."""

import sys

if __name__ == "__main__":
    from .commands.filter import main

    sys.exit(main())
