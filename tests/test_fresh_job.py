"""A fresh process pays only for what it uses: ``--help`` loads no heavy library."""

import subprocess
import sys

HEAVY = ("torch", "scipy", "matplotlib", "sklearn", "transformers", "wandb", "lightning")
PROBE = f"""
import runpy, sys
sys.argv = ["modularity.run", "--help"]
try:
    runpy.run_module("modularity.run", run_name="__main__")
except SystemExit:
    pass
print("loaded:", ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
"""


def test_help_imports_no_heavy_library():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert "== Configuration groups ==" in proc.stdout, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "loaded:"
