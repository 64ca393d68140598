"""The server process stays light: importing the FastAPI app (with the guard and search routes) loads neither torch
nor scipy/datasketch (the data-curation stack); they are imported only by the commands that use them."""

from __future__ import annotations

import json
import subprocess
import sys


def test_serve_app_imports_no_heavy_stack():
    code = ("import sys, json; import kogata.serve.app; from kogata.serve.app import create_app; "
            "print(json.dumps([m for m in ('torch', 'scipy', 'datasketch', 'transformers') if m in sys.modules]))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
