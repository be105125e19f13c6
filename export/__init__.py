"""From a checkpoint to a self-contained model folder: ONNX export (onnx_export.py), the precision edits
(precision.py), and `tango-rt check` against the FP32 torch reference (check.py)."""
