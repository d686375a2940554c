"""Model families: each module exposes ``build_task(config, mesh) -> Task``."""
