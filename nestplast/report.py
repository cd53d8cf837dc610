"""``python -m nestplast.report RUN_DIR``: the command lives in :mod:`nestplast.commands.report`,
the summary and plots in :mod:`nestplast.analysis.search`."""

import sys

if __name__ == "__main__":
    from .commands.report import main

    sys.exit(main())
