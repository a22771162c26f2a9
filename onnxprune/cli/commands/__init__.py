"""One module per CLI verb: importing it registers the verb on `onnxprune.cli.app.app`."""
