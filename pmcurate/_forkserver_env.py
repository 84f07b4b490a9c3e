"""Imported first by a local pool's forkserver (``executor.LocalExecutor``): the workers' environment
(``executor.WORKER_ENV``) set before the rest of its preload imports NumPy, whose OpenBLAS reads
``OPENBLAS_NUM_THREADS`` once, when it is loaded; the workers forked from it inherit that."""

import os

from pmcurate.executor import WORKER_ENV

os.environ.update(WORKER_ENV)
