"""Private building blocks of ddcal-sklearn (no stability promise): the leaves of the package.

Randomness, devices, atomic files and format versions, the one JSON coercer, the
one ``.npz`` reader and writer, run fingerprints and checkpoints, and input checks.
This subpackage imports nothing else of ddcal-sklearn; everything else may import it.
"""

from ._checkpoint import (
    NOT_FINGERPRINTED,
    RunCheckpoint,
    describe,
    fingerprint_differences,
    fingerprint_digest,
    read_checkpoint,
    run_fingerprint,
    save_checkpoint,
    sha256,
    to_cpu,
)
from ._device import resolve_device
from ._io import (
    atomic_write,
    check_format_version,
    npz_path,
    open_regular_file,
    read_npz,
    remove_stale_temporaries,
    write_npz,
)
from ._json import dumps_with_arrays, is_jsonable, loads_with_arrays, parse_json, to_jsonable
from ._random import check_generator, draw_seed, torch_generator
from ._validation import (
    MAX_INPUT_MAGNITUDE,
    SOFT_LABEL_TOLERANCE,
    check_input_scale,
    check_label_types,
    check_network_input,
    check_soft_labels,
    image_estimator_tags,
    is_soft_labels,
    naming_the_input,
)
from ._version import __version__

__all__ = [
    "__version__",
    "MAX_INPUT_MAGNITUDE",
    "NOT_FINGERPRINTED",
    "RunCheckpoint",
    "SOFT_LABEL_TOLERANCE",
    "atomic_write",
    "check_format_version",
    "check_generator",
    "check_input_scale",
    "check_label_types",
    "check_network_input",
    "check_soft_labels",
    "describe",
    "draw_seed",
    "dumps_with_arrays",
    "fingerprint_differences",
    "fingerprint_digest",
    "image_estimator_tags",
    "is_jsonable",
    "is_soft_labels",
    "loads_with_arrays",
    "npz_path",
    "naming_the_input",
    "open_regular_file",
    "parse_json",
    "read_checkpoint",
    "read_npz",
    "remove_stale_temporaries",
    "resolve_device",
    "run_fingerprint",
    "save_checkpoint",
    "sha256",
    "to_cpu",
    "to_jsonable",
    "torch_generator",
    "write_npz",
]
