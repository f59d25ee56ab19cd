"""The host runtimes for exported artifacts (``load(path) -> Runner``), under the runtime's name.

They live in :mod:`convert.runtimes`, one layer down, because the exporter verifies every artifact with them
(``convert.targets.base.verify``); this module is the same objects.
"""
from convert.runtimes import *  # noqa: F401,F403
from convert.runtimes import __all__  # noqa: F401
