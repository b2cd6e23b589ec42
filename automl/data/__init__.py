"""Data loaders, splits and the shared preprocessing used by training, predict and serve."""
