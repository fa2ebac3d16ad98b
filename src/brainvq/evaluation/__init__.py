"""Evaluation measures that ask whether generated slices look real."""
