"""Evaluation of frozen encoders: probes and collapse diagnostics."""
