"""A module whose import takes ten minutes: a forkserver preloading it is still importing when
stopped (``tests/test_executor.py``); bounded, so that a failing run leaves no process behind."""

import threading

threading.Event().wait(timeout=600)
