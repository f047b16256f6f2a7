"""The optional compiled marker scan; everything else is in pyproject.toml.

``optional=True``: without a C compiler the install goes on and
``personalize_mw.core.markers`` uses the same scan in pure Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("personalize_mw.core._scan", ["personalize_mw/core/_scan.c"], optional=True)])
