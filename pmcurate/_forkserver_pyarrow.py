"""Imported last by the forkserver of a pool that runs the steps after the harvest
(``executor.BUILD_PRELOAD``): pyarrow set up to read and convert without pandas
(``schema.pyarrow_datasets_without_pandas``) once, for every worker forked from it."""

from pmcurate import schema

schema.pyarrow_datasets_without_pandas()
