"""Random streams: ``random_state`` to a NumPy generator once per fit, seeds for torch generators."""

import numbers

import numpy as np
import torch


def check_generator(random_state):
    """Turn ``random_state`` into a :class:`numpy.random.Generator`, once per fit.

    Accepts what scikit-learn accepts (None, an int, a ``RandomState``) plus a
    ``Generator``. A ``RandomState`` is consumed (one draw), as scikit-learn would.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, numbers.Integral) and random_state >= 0:  # numpy's own error names nothing
        return np.random.default_rng(int(random_state))
    raise ValueError(
        f"random_state={random_state!r} is not valid: use None, a non-negative int, a "
        "numpy.random.RandomState or a numpy.random.Generator."
    )


def draw_seed(rng):
    """One 63-bit seed from a numpy Generator, for a torch.Generator or a clone."""
    return int(rng.integers(0, 2**63 - 1))


def torch_generator(rng, device):
    """A :class:`torch.Generator` on ``device`` seeded from the numpy Generator ``rng``."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(draw_seed(rng))
    return generator
