"""Measured performance and accuracy targets, printed as a table by `make bench`."""
