"""Builds pmcurate's one compiled module, the JATS walk (``pmcurate/harvest/_jatswalk.pyx``).

Everything else about the package is in pyproject.toml. The module is Cython over lxml's public C
API: it is compiled against the headers lxml ships (``lxml.get_include()``), so Cython and lxml
are build requirements (``[build-system] requires``) and a C compiler is needed to install.
"""

import hashlib
from pathlib import Path

from Cython.Build import cythonize
from lxml import get_include
from setuptools import Extension, setup

SOURCE = "pmcurate/harvest/_jatswalk.pyx"
# the module records the source it was built from: `jats.check_build` refuses a stale build
SOURCE_SHA256 = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()

setup(
    ext_modules=cythonize(
        [
            Extension(
                "pmcurate.harvest._jatswalk",
                [SOURCE],
                include_dirs=get_include(),
            )
        ],
        compiler_directives={"language_level": 3},
        compile_time_env={"PYX_SHA256": SOURCE_SHA256},
    )
)
