"""cnn-lens's benchmark suite: `python -m bench --help`. Loopback only; not part of the tests."""
