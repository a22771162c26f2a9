"""Step 2, analysis: each layer's cost (params, FLOPs, memory, measured latency) and the channel
dependency groups: the channel algebra, `oprules/` (THE registry of per-op channel rules) and the
group builder. Reads graphs through `onnxprune.read`; edits nothing."""
