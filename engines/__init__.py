"""TensorRT engines built from an exported ONNX folder: optimization profiles from the declared shape ranges
(profiles.py, no GPU needed) and the build itself (build.py)."""
