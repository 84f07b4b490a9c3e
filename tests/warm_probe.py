"""A module that nothing imports but ``LocalExecutor.warm`` in ``tests/test_executor.py``."""
