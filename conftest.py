"""Settings shared by the test suite (``tests/``) and the docstring examples (``ddcal_sklearn/``).

``make test`` collects both (``testpaths`` and ``--doctest-modules`` in pyproject.toml). This
file sits at the repository root, outside the package, so that it applies to the doctests
too; the fixtures live in ``tests/conftest.py``.
"""

import torch

# One thread: the suite's tensors are small, and two threads on two busy cores make every small
# op spin-wait (a 20-epoch fit measured 17.5 s with 2 threads on a loaded machine, 2.6 s with 1).
torch.set_num_threads(1)
