"""Fixtures shared by the tests that compile many models: the C runtime, compiled once."""
import pytest

from bitgen.backends.c import host


@pytest.fixture(scope="session")
def host_runtime(tmp_path_factory):
    """The runtime's kernels as position-independent objects, for host.build(..., runtime=)."""
    rt = host.HostRuntime(tmp_path_factory.mktemp("runtime"))
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def sanitized_runtime(tmp_path_factory):
    """The same under ASan + UBSan, for host.build_sanitized(..., runtime=); skips without them."""
    why = host.sanitizer_support()
    if why:
        pytest.skip(why)
    rt = host.HostRuntime(tmp_path_factory.mktemp("runtime-asan"), sanitize=True)
    yield rt
    rt.close()
