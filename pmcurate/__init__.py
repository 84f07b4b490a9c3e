"""pmcurate: curated training corpora from PubMed Central Open Access."""

__version__ = "0.1.0"
