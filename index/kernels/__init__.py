"""Numba kernels over flat, typed, C-contiguous arrays.

Each kernel module keeps a plain-NumPy reference implementation beside the
compiled kernel (``*_ref``); the tests check the two against each other.
"""
