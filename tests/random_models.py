"""The random-model strategies of the property tests live in :mod:`bitgen.fuzz` (``bitgen sweep
--fuzz`` draws them too); this module keeps the tests' imports short."""
from bitgen.fuzz import STRATEGIES, graphs, models  # noqa: F401
