"""Data sources and grain pipelines (grain/tfds are imported lazily, inside functions)."""
