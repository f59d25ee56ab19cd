"""``python -m runtime_py.bench``."""
import sys

from runtime_py.bench.cli import main

sys.exit(main())
