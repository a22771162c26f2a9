"""Measuring and hand-off: onnxruntime benchmarks, budgets (`check`), output comparison and the
zero-mask oracle, other runtimes (OpenVINO, ncnn) and int8 quantization. Builds on `read`,
`analysis` and `prune`; never imports `trainers`."""
