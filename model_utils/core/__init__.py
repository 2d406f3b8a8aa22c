"""The shared vocabulary of every layer: errors, progress reports, the model catalog, sampling bounds."""
