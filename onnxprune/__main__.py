"""`python -m onnxprune`: the CLI (onnxprune/cli/)."""

from onnxprune.cli import entry

entry()
