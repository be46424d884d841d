"""Invertible flows (Glow): every layer has forward(x) -> (y, logdet) and inverse(y) -> (x, logdet)."""
