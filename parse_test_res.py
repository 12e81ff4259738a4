"""Average results over seeds and build paper-style tables (see docs/results.md).

Upstream-compatible: ``python parse_test_res.py DIR [--ci95] [--multi-exp] [--test-log] [--keyword K]``.
The logic lives in the ``reporting`` package.
"""

import sys

from reporting.cli import main

if __name__ == "__main__":
    sys.exit(main())
