"""The error every importer raises for a file it cannot convert."""
from ..errors import BitgenError


class ModelImportError(BitgenError):
    """A model file that cannot be converted to bitgen's IR (one-line message)."""
