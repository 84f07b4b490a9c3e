"""Harvest: JATS articles from disk or the network into the base tables (docs/harvest*.md)."""

from pmcurate.errors import Fatal


class HarvestInputError(Fatal):
    """A harvest that cannot start because of its arguments or input files (a user mistake)."""
