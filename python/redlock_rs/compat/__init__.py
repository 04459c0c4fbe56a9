"""Drop-in replacements for the two oldest Python Redlock libraries.

* :mod:`redlock_rs.compat.redlock_py`: ``redlock-py`` 1.0.8 (SPSCommerce),
  ``from redlock_rs.compat.redlock_py import Redlock``.
* :mod:`redlock_rs.compat.glasslion`: glasslion's ``redlock`` (PyPI
  ``redlock`` 1.2.0 / master), ``from redlock_rs.compat.glasslion import RedLock``.

Both keep their seed's names, signatures, units and return values; the
locks themselves go through the Rust client. Their ``servers`` /
``redis_nodes`` attributes and glasslion's ``locked()`` need redis-py
(``pip install 'redlock-rs[compat]'``).
"""
