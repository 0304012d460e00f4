"""bitgen monitor in a real browser (Debian's chromium, headless, driven by selenium): the page
loads, its charts grow as the board's frames arrive, and every value it shows equals what the
stream and the golden model say; a page showing one wrong value fails the same check."""
import shutil
import threading
import time

import numpy as np
import pytest

from bitgen import golden, ir
from bitgen.harness import boards
from bitgen.harness.session import Session
from bitgen.monitor import FrameResult, Monitor, Readout, run_frames, serve

from test_change import slow_stream, small_cnn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver (tools/setup.sh installs them)")
FRAMES = 10


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _start(model, frames, labels, interval):
    monitor = Monitor(model, [f"class{k}" for k in range(5)], "ch32v003-sim", Readout(threshold=0, default="quiet"),
                      window=50, shape=model.input.shape)
    server = serve(monitor, "127.0.0.1", 0)
    board = boards.get("ch32v003-sim")

    def feed():
        try:
            with Session(board, model, name="mon") as s:
                run_frames(monitor, enumerate(s.stream_frames(frames)), frames, labels, s.info.clock_hz, interval)
        except Exception as e:  # noqa: BLE001 (shown on the page; the test sees monitor.error)
            monitor.finish(str(e))

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return monitor, server, thread


def _check_page(driver, model, frames, labels):
    """Every value the page shows equals the stream's and the golden model's."""
    page = driver.execute_script("return window.bitgen")
    expect = golden.run_sequence(model, frames[None])[0].reshape(len(frames), -1)
    want_cls = golden.argmax(expect)
    changes = golden.changed_pixels(model, frames)  # what the board's m-bg-changed must report
    assert len(page["frames"]) == len(frames)
    for k, f in enumerate(page["frames"]):
        assert f["frame"] == k
        assert f["scores"] == expect[k].tolist(), f"frame {k}: scores shown differ from golden"
        assert f["cls"] == want_cls[k] and f["golden_cls"] == want_cls[k] and not f["mismatch"]
        assert f["input"] == frames[k].reshape(-1).tolist()
        assert f["label"] == labels[k]
        top = int(np.max(expect[k]))
        assert f["readout"] == (f"class{want_cls[k]}" if top >= 0 else "quiet")
        assert f["changed"] == changes[k], f"frame {k}: the board's changed pixels differ from golden's"
    # the charts hold the same numbers
    scores = driver.execute_script("return document.getElementById('scores').data.map(t => t.y)")
    assert scores == [expect[:, c].tolist() for c in range(expect.shape[1])], "the score chart differs"
    cost = driver.execute_script("return document.getElementById('cost').data[0].y")
    assert cost == [f["instructions"] for f in page["frames"]] and all(v > 0 for v in cost)
    pixels = sum(ir.change.gate_pixels(model))
    change = driver.execute_script("return document.getElementById('change').data[0].y")
    assert change == [sum(c) / pixels for c in changes], "the changed-pixel chart differs"
    # the text panels show the last frame
    last = page["frames"][-1]
    text = lambda i: driver.find_element("id", i).text  # noqa: E731
    assert text("frames") == str(len(frames)) and text("mismatches") == "0"
    assert text("instructions") == f"{last['instructions']:,}"
    assert text("readout") == last["readout"]
    assert text("changed") == f"{100 * sum(changes[-1]) / pixels:.1f} %"
    # the canvas shows the last input frame (first channel, int8 + 128 as grey)
    pixels = driver.execute_script(
        "const c = document.getElementById('frame'); "
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")
    grey = np.array(pixels).reshape(-1, 4)[:, 0]
    assert grey.tolist() == (frames[-1][0].reshape(-1).astype(int) + 128).tolist(), "the frame drawn differs"


def _watch(driver, url, monitor):
    """Load the page and watch the score chart grow until the stream ends; the sizes seen."""
    driver.get(url)
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        n = driver.execute_script("const d = document.getElementById('scores').data; return d ? d[0].y.length : -1")
        if not seen or seen[-1] != n:
            seen.append(n)
        if driver.execute_script("return window.bitgen.ended") and n == FRAMES:
            break
        time.sleep(0.05)
    assert monitor.error is None, monitor.error
    return seen


def test_the_page_follows_the_board_live_and_shows_exact_values(browser):
    model = ir.change.with_thresholds(small_cnn(hw=12), 0)
    frames = slow_stream(frames=FRAMES, hw=12)[0]
    labels = [k % 5 for k in range(FRAMES)]
    monitor, server, thread = _start(model, frames, np.array(labels), interval=0.3)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        seen = _watch(browser, url, monitor)
        assert len([n for n in seen if 0 < n < FRAMES]) >= 2, f"the charts did not update live: {seen}"
        assert "model" in browser.find_element("id", "model").text
        _check_page(browser, model, frames, labels)
        assert monitor.summary()["mismatches"] == 0
    finally:
        server.shutdown()
        thread.join(60)


@pytest.mark.parametrize("field, message", [("scores", "frame 3: scores shown differ"),
                                            ("changed", "frame 3: the board's changed pixels differ")])
def test_a_page_showing_a_wrong_value_fails_the_check(browser, monkeypatch, field, message):
    """One value of one frame (a score, a changed-pixel count) off by one on the way to the
    page: the check must catch it."""
    real = FrameResult.to_json

    def corrupt(self):
        d = real(self)
        if d["frame"] == 3:
            d[field] = [d[field][0] + 1] + d[field][1:]
        return d

    monkeypatch.setattr(FrameResult, "to_json", corrupt)
    model = ir.change.with_thresholds(small_cnn(hw=12), 0)
    frames = slow_stream(frames=FRAMES, hw=12)[0]
    labels = [k % 5 for k in range(FRAMES)]
    monitor, server, thread = _start(model, frames, np.array(labels), interval=0.0)
    try:
        _watch(browser, f"http://127.0.0.1:{server.server_address[1]}/", monitor)
        with pytest.raises(AssertionError, match=message):
            _check_page(browser, model, frames, labels)
    finally:
        server.shutdown()
        thread.join(60)
