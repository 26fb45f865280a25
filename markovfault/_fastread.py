"""Where :func:`group_order` was imported from before the reader became the package ``markovfault.histories``.

Kept only for ``predictor.py``, which imports ``group_order`` from here; import it from
``markovfault.histories._fast`` instead, and remove this module when nothing imports it any more.
"""

from .histories._fast import group_order

__all__ = ["group_order"]
