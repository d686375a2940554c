"""Reusable linen layers (attention, positions, transformer blocks, ViT, UNet, recurrent cells)."""
