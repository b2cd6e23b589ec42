"""Compression of a searched model: channel pruning, ONNX export, quantization, measurement."""
