"""The wire protocol: EEMBC-compatible replies, the board's refusals, and the host's recovery from
garbage, dropped bytes, wrong lengths, wrong checksums, stale replies and a silent board.

Runs against the ``host`` board (the same bg_protocol.c, compiled natively, on a pty), with a
saboteur between the host and the board."""
from __future__ import annotations

import re
import time
import zlib

import numpy as np
import pytest

from bitgen.harness import boards
from bitgen import golden
from bitgen.harness.link import BoardFault, BoardSilent, DeviceError, Link, LinkError, LinkTimeout
from bitgen.harness.session import Session
from models_for_tests import mlp

MODEL = mlp(seed=7, widths=(40, 8, 4))  # 40 input bytes: two db lines (32 + 8)
N = MODEL.input.size


class Saboteur:
    """Stands between a Link and a pyserial port. tx/rx are lists of one-shot byte rewriters:
    each sees every byte and returns the bytes to pass on (b"" drops it)."""

    def __init__(self, port):
        self.port = port
        self.tx: list = []
        self.rx: list = []
        self.silent = False

    def _apply(self, rules, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            piece = bytes([b])
            for r in rules:
                piece = b"".join(r(bytes([c])) for c in piece) if piece else piece
            out += piece
        return bytes(out)

    def write(self, data):
        if not self.silent:
            self.port.write(self._apply(self.tx, data))
        return len(data)

    def read(self, n):
        data = self.port.read(n)
        return b"" if self.silent else self._apply(self.rx, data)

    @property
    def in_waiting(self):
        return self.port.in_waiting

    def flush(self):
        self.port.flush()

    def close(self):
        self.port.close()


class After:
    """Rule: once ``pattern`` has passed (and ``skip`` more bytes), apply ``action`` to the next
    byte; once, or every time with ``every=True``."""

    def __init__(self, pattern: bytes, action, skip: int = 0, every: bool = False):
        self.pattern, self.action, self.skip0, self.every = pattern, action, skip, every
        self.skip = skip
        self.window = b""
        self.armed = False
        self.fired = False

    def __call__(self, byte: bytes) -> bytes:
        if self.fired:
            return byte
        if self.armed:
            if self.skip:
                self.skip -= 1
                return byte
            self.fired = not self.every
            self.armed, self.skip, self.window = False, self.skip0, b""
            return self.action(byte)
        self.window = (self.window + byte)[-len(self.pattern):]
        self.armed = self.window == self.pattern
        return byte


DROP = lambda b: b""  # noqa: E731
FLIP = lambda b: bytes([b[0] ^ 0x01])  # noqa: E731 - "1" <-> "0", "a" <-> "`"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with Session(boards.get("host"), MODEL, workdir=str(tmp_path_factory.mktemp("host"))) as s:
        yield s


@pytest.fixture
def link(board):
    sab = Saboteur(board.link.port)
    lk = Link(sab, timeout=0.5, infer_timeout=2.0, retries=3)
    lk.sync()
    lk.info()
    yield lk
    sab.tx.clear()
    sab.rx.clear()
    sab.silent = False


def expected(x):
    return golden.run(MODEL, x[None])[0]


def some_input(seed=0):
    return np.random.default_rng(seed).integers(-128, 128, N).astype(np.int8)


def raw_load(link, x: bytes, header: str) -> list[list[str]]:
    replies = [link.command(header)]
    for i in range(0, len(x), 32):
        replies.append(link.command("db " + x[i : i + 32].hex()))
    return replies


# -------------------------------------------------------------------------- EEMBC compatibility
def test_eembc_replies(link):
    assert link.command("name") == ["m-name-dut-[bitgen host]"]
    assert link.command("profile") == ["m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[model]"]
    (lap,) = link.command("timestamp")
    assert re.fullmatch(r"m-lap-us-\d+", lap)
    with pytest.raises(DeviceError, match=r"Unknown command: frobnicate"):
        link.command("frobnicate")
    with pytest.raises(DeviceError, match=r"Inference iterations must be >0"):
        link.command("infer 0 1")


def test_plain_eembc_session_without_crc(link):
    """An EEMBC host sends no CRC; the board still checks the length and answers in EEMBC form."""
    x = some_input(1)
    replies = raw_load(link, x.tobytes(), f"db load {N}")
    assert replies == [[f"m-[Expecting {N} bytes]"], [], ["m-load-done"]]
    lines = link.command("infer 3 2")
    assert lines[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-3"]
    assert re.fullmatch(r"m-lap-us-\d+", lines[3]) and re.fullmatch(r"m-lap-us-\d+", lines[4])
    assert lines[5] == "m-infer-done"
    values = [int(v) for v in re.fullmatch(r"m-results-\[(.*)\]", lines[6]).group(1).split(",")]
    assert values == expected(x).tolist()
    assert link.command("results")[0] == lines[6]  # the last results, again


def test_results_crc_binds_the_result_to_its_input(link):
    x = some_input(2)
    crc = link.load(x.tobytes())
    lines = link.command("infer 1 0")
    block = "".join(ln + "\r\n" for ln in lines[6:9]).encode()
    assert lines[9] == f"m-bg-crc-[{zlib.crc32(block, crc):08x}]"
    assert lines[9] != f"m-bg-crc-[{zlib.crc32(block):08x}]"


# ------------------------------------------------------------ the board refuses bad input
def _refused(link, cmd, why):
    with pytest.raises(DeviceError, match=why) as e:
        link.command(cmd)
    return e


def test_board_refuses_an_incomplete_input(link):
    x = some_input(3).tobytes()
    assert link.command(f"db load {N} {zlib.crc32(x):08x}") == [f"m-[Expecting {N} bytes]"]
    assert link.command("db " + x[:32].hex()) == []
    _refused(link, "infer 1 0", "input incomplete")


def test_board_refuses_a_wrong_checksum(link):
    x = some_input(4).tobytes()
    raw_load(link, x, f"db load {N} {zlib.crc32(x) ^ 1:08x}")
    _refused(link, "infer 1 0", "input crc mismatch")


def test_board_refuses_a_wrong_length(link):
    _refused(link, f"db load {N - 1}", f"db load size must be {N}")
    _refused(link, "infer 1 0", "input incomplete")
    x = some_input(5).tobytes()
    link.command(f"db load {N}")
    link.command("db " + x[:32].hex())
    _refused(link, "db " + x[:16].hex(), "db: bad data")  # 8 bytes too many
    _refused(link, "infer 1 0", "input (corrupt|incomplete)")


@pytest.mark.parametrize("payload", ["0", "zz", "0a0", "0a 0b"])
def test_board_refuses_malformed_data(link, payload):
    link.command(f"db load {N}")
    _refused(link, "db " + payload, "db: bad data")
    _refused(link, "infer 1 0", "input (corrupt|incomplete)")


def _line(x: bytes, at: int) -> str:
    """A db @ line: the bytes at offset `at` and their CRC-32, little-endian."""
    return f"db @{at} {(x + zlib.crc32(x).to_bytes(4, 'little')).hex()}"


def test_db_at_lines_load_an_input_and_a_line_sent_twice_does_no_harm(link):
    x = some_input(30).tobytes()
    assert link.command(f"db load {N} {zlib.crc32(x):08x}") == [f"m-[Expecting {N} bytes]"]
    assert link.command(_line(x[:20], 0)) == []
    assert link.command(_line(x[:20], 0)) == []  # its reply was lost: sent again, nothing changes
    assert link.command(_line(x[10:30], 10)) == []  # overlapping: only the new bytes are taken
    assert link.command(_line(x[30:], 30)) == ["m-load-done"]
    assert link.command(_line(x[30:], 30)) == ["m-load-done"]
    r = link.infer(zlib.crc32(x))
    assert np.array_equal(r.outputs, expected(np.frombuffer(x, np.int8)))


@pytest.mark.parametrize("fault", ["crc", "gap", "past the end", "no crc"])
def test_board_takes_nothing_of_a_bad_db_at_line(link, fault):
    x = some_input(31).tobytes()
    link.command(f"db load {N} {zlib.crc32(x):08x}")
    link.command(_line(x[:20], 0))
    bad = {"crc": _line(x[20:30], 20)[:-2] + "00", "gap": _line(x[25:30], 25),
           "past the end": _line(x[20:] + b"\0", 20), "no crc": f"db @20 {x[20:30].hex()}"}[fault]
    _refused(link, bad, "db: bad data")  # "no crc": 10 bytes taken as 6 and a CRC that is not theirs
    assert link.command(_line(x[20:], 20)) == ["m-load-done"]  # the load goes on where it was
    assert np.array_equal(link.infer(zlib.crc32(x)).outputs, expected(np.frombuffer(x, np.int8)))


def test_a_damaged_line_is_sent_again_not_the_whole_input(link):
    sent = []
    write = link.port.write
    link.port.write = lambda data: (sent.append(bytes(data)), write(data))[1]
    link.port.tx.append(After(b"%db @28 ", FLIP, skip=4))  # a hex digit of the second line
    x = some_input(32)
    assert np.array_equal(link.classify(x).outputs, expected(x))
    text = b"".join(sent).decode()
    assert text.count("db load") == 1 and text.count("db @28 ") == 2 and text.count("db @0 ") == 1
    assert "bad data" in link.events[0]


def test_a_damaged_infer_reply_is_fetched_again_not_computed_again(link):
    sent = []
    write = link.port.write
    link.port.write = lambda data: (sent.append(bytes(data)), write(data))[1]
    link.port.rx.append(After(b"m-results-[", FLIP, skip=1))
    x = some_input(33)
    assert np.array_equal(link.classify(x).outputs, expected(x))
    text = b"".join(sent).decode()
    assert text.count("infer ") == 1 and text.count("results%") == 1 and "CRC" in link.events[0]


def test_results_of_another_input_are_refused(link):
    x0, x1 = some_input(34).tobytes(), some_input(35).tobytes()
    link.infer(link.load(x0))
    crc1 = link.load(x1)  # loaded, not computed: the board's last results are x0's
    with pytest.raises(LinkError, match="CRC"):
        link.results(crc1)


def test_a_damaged_bg_info_is_asked_again(link):
    link.info_ = None
    link.port.rx.append(After(b"m-bg-hash-[", FLIP, skip=3))
    info = link.info()
    assert info.hash == MODEL.digest() and "bg-info" in link.events[0] and "CRC" in link.events[0]


def test_a_damaged_m_ready_ends_the_reply_at_once(link):
    link.port.rx.append(After(b"m-load-done\r\nm-r", FLIP))  # "m-ready" becomes "m-rdady"
    t0 = time.monotonic()
    x = some_input(36)
    assert np.array_equal(link.classify(x).outputs, expected(x))
    assert "its m-ready" in link.events[0] and time.monotonic() - t0 < link.timeout  # no wait for the deadline


def test_a_reply_cut_after_the_inference_costs_the_command_timeout_not_the_inference_timeout(link):
    link.infer_timeout = 30.0
    link.port.rx.append(After(b"m-bg-crc-[", DROP, skip=19))  # the infer reply's last line end
    t0 = time.monotonic()
    x = some_input(38)
    assert np.array_equal(link.classify(x).outputs, expected(x))
    assert time.monotonic() - t0 < 10 and "no complete reply to 'infer 1 0'" in link.events[0]


def test_infer_counts_are_bounded_on_the_board(link):
    """A board busy for hours answers nothing: infer N W takes at most 1000 of each."""
    x = some_input(37).tobytes()
    link.load(x)
    for cmd in ("infer 1001 0", "infer 1 1001", "infer 4294967295 0"):
        _refused(link, cmd, "bad arguments")
    assert link.command("infer 1000 0")[2] == "m-infer-start-1000"


def test_board_refuses_long_or_garbled_commands(link):
    _refused(link, "db " + "00" * 60, "command too long")
    _refused(link, "na\x01me", "garbled command")


# ---------------------------------------------------------------- the host recovers
def _recovers(link, x):
    r = link.classify(x)
    assert np.array_equal(r.outputs, expected(x))
    assert link.events, "the fault was not noticed"
    return link.events


def test_garbage_bytes_to_the_board(link):
    link.port.tx.append(After(b"%db ", lambda b: b"\x00\xfe~~" + b))
    events = _recovers(link, some_input(6))
    assert "garbled" in events[0]


def test_garbage_bytes_from_the_board(link):
    link.port.rx.append(After(b"m-load-done\r\n", lambda b: b"\xff\x00junk\r\n" + b))
    events = _recovers(link, some_input(7))
    assert "damaged reply" in events[0]


def test_dropped_byte_to_the_board(link):
    link.port.tx.append(After(b"%db ", DROP, skip=5))  # in the first data line
    assert "bad data" in _recovers(link, some_input(8))[0]


def test_dropped_command_end_to_the_board(link):
    link.port.tx.append(After(b"infer 1 0", DROP))  # the '%': the board waits for more
    assert "no complete reply" in _recovers(link, some_input(9))[0]


def test_dropped_byte_from_the_board(link):
    link.port.rx.append(After(b"m-results-[", DROP))
    assert "CRC" in _recovers(link, some_input(10))[0] or "unexpected" in link.events[0]


def test_corrupted_result_digit_is_caught_by_the_crc(link):
    link.port.rx.append(After(b"m-results-[", FLIP, skip=1))
    assert "CRC" in _recovers(link, some_input(11))[0]


def test_wrong_checksum_on_the_wire(link):
    # one hex digit of the announced CRC changes in transit: the board refuses to compute
    link.port.tx.append(After(f"db load {N} ".encode(), FLIP))
    assert "input crc mismatch" in _recovers(link, some_input(12))[0]


def test_wrong_length_on_the_wire(link):
    link.port.tx.append(After(b"db load ", lambda b: b"1"))  # "db load 40" becomes "db load 10"
    assert "size must be" in _recovers(link, some_input(13))[0]


def test_stale_reply_out_of_order(link):
    x0, x1 = some_input(14), some_input(15)
    link.classify(x0)
    # the whole reply to the previous infer arrives again, in front of the next exchange's reply
    stale = "".join(ln + "\r\n" for ln in link.command("results")).encode() + b"m-ready\r\n"
    link.port.rx.append(After(b"m-ready\r\n", lambda b: stale + b))
    r = link.classify(x1)
    assert np.array_equal(r.outputs, expected(x1))


def test_partial_command_is_cleared_by_sync(link):
    link.port.write(b"db 00112233")  # no '%': the board holds a partial command
    link.sync()
    assert np.array_equal(link.classify(some_input(16)).outputs, expected(some_input(16)))


def test_board_that_stops_answering_gives_a_clear_error(link):
    link.port.tx.append(After(b"db ", lambda b: (setattr(link.port, "silent", True), b)[1]))
    t0 = time.monotonic()
    with pytest.raises(BoardSilent, match="does not answer"):
        link.classify(some_input(17))
    # bounded, and not retried: a board that answers no resync at all is gone
    assert time.monotonic() - t0 < 5


def test_no_result_is_ever_returned_for_a_damaged_input(link):
    """Damage every attempt: the host gives up, it never returns a result."""
    link.port.tx.append(After(b"%db ", FLIP, skip=3, every=True))
    with pytest.raises(LinkError, match="no valid result"):
        link.classify(some_input(18))


def test_fault_report_is_not_retried(link):
    link.port.rx.append(After(b"m-load-done\r\n", lambda b: b"e-[fault 2 pc 1234]\r\nm-ready\r\n" + b))
    with pytest.raises(BoardFault, match="fault 2 pc 1234"):
        link.classify(some_input(19))


def test_timeout_names_the_command(link):
    link.port.silent = True
    with pytest.raises(LinkTimeout, match=r"no complete reply to 'name' \(nothing for 0.5 s\)"):
        link.command("name")
