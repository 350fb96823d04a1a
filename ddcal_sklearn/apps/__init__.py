"""Applications built on the public API only: the demo (``make demo``) and the paper's study (``ddcal-reproduce``)."""
