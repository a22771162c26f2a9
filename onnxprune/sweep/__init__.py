"""Sweeps: shrink at several modes x targets, train each network (`trainers`), bench it; one run is
self-contained so an executor (this process, a Ray cluster) can run it anywhere. The one part of
the library besides the CLI that imports `trainers`."""
