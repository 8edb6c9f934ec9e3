"""``python -m pcp pcp_node_info ...``: run a pcp_* tool by name."""

from __future__ import annotations

import sys

from pcp.cli import main

sys.exit(main())
