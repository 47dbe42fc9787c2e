"""Speed, size, accuracy and service benchmarks of the face models; usage: ``python -m bench --help``."""
