"""Offline training and export of cnn-lens model bundles."""
