"""Builds pmcurate's one compiled module, the JATS walk (``pmcurate/harvest/_jatswalk.pyx``).

Everything else about the package is in pyproject.toml. The module is Cython over lxml's public C
API: it is compiled against the headers lxml ships (``lxml.get_include()``), so Cython and lxml
are build requirements (``[build-system] requires``) and a C compiler is needed to install.
"""

from Cython.Build import cythonize
from lxml import get_include
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "pmcurate.harvest._jatswalk",
                ["pmcurate/harvest/_jatswalk.pyx"],
                include_dirs=get_include(),
            )
        ],
        compiler_directives={"language_level": 3},
    )
)
