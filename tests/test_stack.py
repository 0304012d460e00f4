"""The call-graph stack bound (bitgen.harness.stack) on code compiled here with -fcallgraph-info=su."""
import subprocess

import pytest

from bitgen.harness import stack

SOURCE = r"""
__attribute__((noinline)) int leaf(volatile int *p) { volatile int big[16]; big[3] = *p; return big[3]; }
__attribute__((noinline)) static int middle(volatile int *p) { volatile int buf[8]; buf[1] = leaf(p); return buf[1] + leaf(p); }
int (*volatile hook)(volatile int *) = leaf;
int rec(int n) { volatile int pad[4]; pad[0] = n; return n ? rec(n - 1) + pad[0] : 0; }
int main(void) { volatile int v = 1; return middle(&v) + hook(&v); }
int uses_rec(void) { return rec(3); }
int dynamic(int n) { volatile char a[n]; a[0] = 1; return a[0] + leaf((volatile int *)&n); }
"""


@pytest.fixture(scope="module")
def ci(tmp_path_factory):
    d = tmp_path_factory.mktemp("ci")
    (d / "prog.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O1", stack.CFLAG, "-c", "prog.c", "-o", "prog.o"], cwd=d, check=True)
    return [d / "prog.ci"]


def test_deepest_path_and_pointer_calls(ci):
    frames, _ = stack.read_graph(ci)
    est = stack.estimate(ci, "main", indirect=("leaf",))
    assert est.bounded and est.path == ["main", "prog.c:middle", "leaf"]
    assert est.bytes == sum(frames[f][0] for f in est.path) > frames["main"][0]
    # without knowing where the pointer goes, the bound is not a bound
    assert not stack.estimate(ci, "main").bounded


def test_recursion_and_dynamic_frames_are_unbounded(ci):
    assert not stack.estimate(ci, "uses_rec").bounded
    assert not stack.estimate(ci, "dynamic").bounded


def test_unknown_entry_is_an_error(ci):
    with pytest.raises(ValueError, match="no call-graph information for 'nope'"):
        stack.estimate(ci, "nope")
