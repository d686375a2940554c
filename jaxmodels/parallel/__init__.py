"""Meshes, logical axis rules and multi-host set-up."""
