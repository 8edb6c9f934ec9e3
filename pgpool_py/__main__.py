import sys

from pgpool_py.cli import main

sys.exit(main())
