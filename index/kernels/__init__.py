"""Numba kernels over flat, typed, C-contiguous arrays.

The query kernels take the argument bundles of :mod:`.bundles`. Every public kernel of the query path
has a plain-NumPy reference beside it (``*_ref``; the query processors' kernels share
:func:`.exhaustive.exhaustive_ref`, the exact top k they all compute) and the tests compare the two
on random data. The index's consistency check at open (:func:`lsr.index.format.check_postings`) is
tested on damaged indexes. The build kernels (``build``, ``reorder``) keep references for their main steps.
"""
