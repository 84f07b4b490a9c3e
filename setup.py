"""Builds pmcurate's compiled modules: the JATS walk (``pmcurate/harvest/_jatswalk.pyx``) and the
language identifier's DFA walk (``pmcurate/filters/_langid.pyx``).

Everything else about the package is in pyproject.toml. The JATS walk is Cython over lxml's public
C API: it is compiled against the headers lxml ships (``lxml.get_include()``), so Cython and lxml
are build requirements (``[build-system] requires``) and a C compiler is needed to install. The
language walk needs only Python's headers (it reads the model's numpy arrays as typed memoryviews).
"""

import hashlib
from pathlib import Path

from Cython.Build import cythonize
from lxml import get_include
from setuptools import Extension, setup


def compiled(name: str, source: str, **options: object) -> list[Extension]:
    """The extension ``name`` built from ``source``, which records the source's SHA-256 as
    ``BUILT_FROM_SHA256``: ``pmcurate.compiled.check_build`` refuses a stale build."""
    sha256 = hashlib.sha256((Path(__file__).parent / source).read_bytes()).hexdigest()
    return cythonize(
        [Extension(name, [source], **options)],
        compiler_directives={"language_level": 3},
        compile_time_env={"PYX_SHA256": sha256},
    )


setup(
    ext_modules=[
        *compiled("pmcurate.harvest._jatswalk", "pmcurate/harvest/_jatswalk.pyx", include_dirs=get_include()),
        *compiled("pmcurate.filters._langid", "pmcurate/filters/_langid.pyx"),
    ]
)
