"""Training lsr's encoders on sentence-transformers' sparse trainer (``lsr train``)."""
