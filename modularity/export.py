"""``python -m modularity.export RUN_DIR OUT_DIR``: the command line of
:mod:`modularity.checkpoint`.

Only run, never imported: ``modularity.export`` is the API function, and importing a
submodule of that name would replace it on the package (``modularity.export(...)`` would
then call a module). Import from :mod:`modularity.checkpoint` instead.
"""

import sys

if __name__ == "__main__":
    from modularity.checkpoint import main

    sys.exit(main())

raise ImportError(
    "modularity.export is the API function (modularity.export(run, out_dir)); import the "
    "checkpoint writer from modularity.checkpoint",
    name=__name__,
)
