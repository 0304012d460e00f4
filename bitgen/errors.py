"""The one exception type the command line turns into a one-line error and a non-zero exit.

Every error caused by the user's input (a broken model file, an unsupported layer, a dataset
that does not fit, a missing board or tool) derives from :class:`BitgenError` and carries a
message that fits on one line. Anything else escaping to the CLI is a bug in bitgen.
"""


class BitgenError(Exception):
    exit_code = 2
