"""Samplers written as jitted ODE/SDE integrators."""
