"""``lsr serve``: search an index over HTTP (a JSON API on FastAPI; the ``serve`` extra).

* :func:`create_app` (:mod:`lsr.serve.app`): the FastAPI app over a searcher (``POST /search``,
  ``GET /health``, ``GET /info``), with the request limits of a :class:`ServeConfig`.
* :func:`run` (:mod:`lsr.serve.server`): open an index and serve it with uvicorn, or deploy the same
  app on Ray Serve (:mod:`lsr.serve.ray_app`, the ``distributed`` extra), until SIGTERM/SIGINT.

Importing this package imports neither FastAPI, uvicorn nor Ray; they are imported where used, with a
one-line error naming the extra when missing.
"""

from .app import create_app
from .config import ServeConfig
from .server import open_searcher, run

__all__ = ["ServeConfig", "create_app", "open_searcher", "run"]
