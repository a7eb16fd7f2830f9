"""Thin bridge from particle states to a physics simulator and back (NumPy in, NumPy out)."""
