"""Back ends: what turns a validated IR into something that runs (see :mod:`bitgen.backends.base`)."""
