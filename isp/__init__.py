"""Reference PyTorch implementation of the Modular Neural ISP."""
