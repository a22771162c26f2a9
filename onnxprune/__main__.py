from onnxprune.cli import entry

entry()
