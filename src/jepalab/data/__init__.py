"""Data: the catalogue of data sets by name (catalog.py), built-in image sets, real-file
loaders, trajectories, batched views."""
