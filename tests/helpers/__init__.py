"""Helpers shared by the test folders, imported as ``helpers.<module>``.

A package of its own rather than ``conftest``: every test folder may have a conftest.py, and
``from conftest import ...`` then binds whichever conftest was imported first under that name
(``pytest tests/graph tests/unit`` failed at collection). setup.cfg's ``pythonpath = tests`` makes
this package importable from every test module, whatever subset pytest is asked to run."""
