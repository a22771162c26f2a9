"""Step 1, reading: load and save ONNX (atomic writes, external data), infer every shape (ONNX, then
onnxruntime's symbolic inference, then a probe run), fold constants, and the small graph IR the
later steps work on. Imports nothing else of onnxprune but `errors`."""
