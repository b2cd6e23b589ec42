"""ONNX Runtime: sessions, metadata, export, counters, latency, INT8, inference and predict."""
