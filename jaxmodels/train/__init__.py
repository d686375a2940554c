"""The shared trainer: state, step builders, loop, checkpoints, metrics."""
