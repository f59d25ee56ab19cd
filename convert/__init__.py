"""Per-stage export of the ISP to phone runtimes (ExecuTorch, LiteRT, Core ML, ONNX).

``convert.targets`` holds one module per target with a common ``export(ExportRequest) -> ExportResult``;
backend packages are imported lazily inside those modules, so importing ``convert`` is cheap.
"""
