#!/usr/bin/env python3
"""Run the `marsseg` command from a checkout without installing it (thin entry point, no logic)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from marsseg.cli.main import main  # noqa: E402

raise SystemExit(main())
