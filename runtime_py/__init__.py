"""Host-side runtimes for exported artifacts: ``runtime_py.runtimes.load(path) -> Runner`` (``convert.runtimes``)."""
