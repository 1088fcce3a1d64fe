"""Torch layers, hardware-aware training, deployment and Monte Carlo evaluation."""
