"""iOS device harness: the Core ML runner app (``IspBenchRunner/``, Swift) and its Python driver (``driver.py``).

Nothing here can be built or run on Linux; see ``ios_harness/README.md`` for what was and was not verified.
"""
