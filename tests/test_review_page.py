"""The review page driven in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which .ci/run installs) through Selenium's WebDriver."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from soundnet.review import read_reviewed
from soundnet.review_server import ReviewServer, review_app

SR = 16000


def _executable(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if found:
            return found
    raise AssertionError(f"none of {names} installed: apt-get install chromium chromium-driver (.ci/run does)")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("chromium", "chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(_executable("chromedriver")), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture
def material(tmp_path) -> tuple[Path, Path]:
    """Three noise recordings and a csv detections table of five events on them."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.wav", "c.wav"):
        sf.write(audio / name, (0.05 * rng.standard_normal(4 * SR)).astype(np.float32), SR)
    detections = tmp_path / "detections.csv"
    detections.write_text(
        "filename,onset,offset,label,confidence\n"
        "a.wav,0.500,1.000,beep,0.9100\n"
        "a.wav,2.000,2.400,beep,0.6200\n"
        "b.wav,1.000,1.800,beep,0.7700\n"
        "c.wav,0.200,0.600,beep,0.5500\n"
        "c.wav,3.000,3.500,beep,0.9900\n"
    )
    return detections, audio


def _ready(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")


def _press(driver, *keys: str) -> None:
    body = driver.find_element(By.TAG_NAME, "body")
    for key in keys:
        body.send_keys(key)


def _wait_for_rows(table: Path, n: int) -> list:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if table.is_file() and len(reviews := read_reviewed(table)) == n:
            return reviews
        time.sleep(0.05)
    raise AssertionError(f"{table} never held {n} decisions")


def _decisions(reviews) -> list[tuple[str, float, str]]:
    return [(r.event.filename, r.event.onset, r.decision) for r in reviews]


def _card_decisions(driver) -> dict[str, str]:
    cards = driver.find_elements(By.CSS_SELECTOR, ".card")
    return {c.get_attribute("data-id"): c.find_element(By.CSS_SELECTOR, ".decision").text.lower() for c in cards}


def test_keys_decide_cards_the_table_holds_exactly_those_and_a_reload_resumes(browser, material, tmp_path):
    detections, audio = material
    out = tmp_path / "reviewed.tsv"
    with ReviewServer(review_app(detections, audio, out=out)) as server:
        _ready(browser, server.url)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".card")) == 5
        first = browser.find_element(By.CSS_SELECTOR, "#card-0")
        assert "current" in first.get_attribute("class")
        image = first.find_element(By.TAG_NAME, "img")
        WebDriverWait(browser, 120).until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
        audio_src = first.find_element(By.TAG_NAME, "audio").get_attribute("src")
        assert audio_src.endswith("/audio/0.wav")

        # a: accept card 0 -> card 1; r: reject card 1 -> card 2; down: card 3; a: accept card 3
        _press(browser, "a", "r", Keys.ARROW_DOWN, "a")
        reviews = _wait_for_rows(out, 3)
        assert _decisions(reviews) == [("a.wav", 0.5, "accepted"), ("a.wav", 2.0, "rejected"), ("c.wav", 0.2, "accepted")]
        assert "current" in browser.find_element(By.CSS_SELECTOR, "#card-4").get_attribute("class")
        WebDriverWait(browser, 60).until(lambda d: "3 of 5 reviewed" in d.find_element(By.ID, "progress").text)

        # up, up: card 2; s: skip it
        _press(browser, Keys.ARROW_UP, Keys.ARROW_UP, "s")
        reviews = _wait_for_rows(out, 4)
        assert ("b.wav", 1.0, "skipped") in _decisions(reviews)

        browser.refresh()  # the page reloads its state from the server
        _ready(browser, server.url)
        assert _card_decisions(browser) == {"0": "accepted", "1": "rejected", "2": "skipped", "3": "accepted", "4": ""}
        assert "current" in browser.find_element(By.CSS_SELECTOR, "#card-4").get_attribute("class")  # the first undecided

    # a restart of the server reads the table back
    with ReviewServer(review_app(detections, audio, out=out)) as server:
        _ready(browser, server.url)
        assert _card_decisions(browser) == {"0": "accepted", "1": "rejected", "2": "skipped", "3": "accepted", "4": ""}
        _press(browser, "r")
        reviews = _wait_for_rows(out, 5)
    assert _decisions(reviews)[-1] == ("c.wav", 3.0, "rejected")


def test_filters_by_confidence_and_file_and_buttons_decide(browser, material, tmp_path):
    detections, audio = material
    out = tmp_path / "reviewed.tsv"
    with ReviewServer(review_app(detections, audio, out=out)) as server:
        _ready(browser, server.url)
        low = browser.find_element(By.ID, "min-confidence")
        low.clear()
        low.send_keys("0.7", Keys.TAB)  # change fires on leaving the field
        WebDriverWait(browser, 60).until(lambda d: set(_card_decisions(d)) == {"0", "2", "4"})
        browser.find_element(By.CSS_SELECTOR, "#file-filter option[value='c.wav']").click()
        WebDriverWait(browser, 60).until(lambda d: set(_card_decisions(d)) == {"4"})
        browser.find_element(By.CSS_SELECTOR, "#card-4 button[data-decision='rejected']").click()
        reviews = _wait_for_rows(out, 1)
    assert _decisions(reviews) == [("c.wav", 3.0, "rejected")]


def test_many_detections_draw_their_cards_as_the_page_scrolls(browser, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "long.wav", np.zeros(60 * SR, np.float32), SR)
    rows = [f"long.wav,{t / 10:.3f},{t / 10 + 0.05:.3f},beep,0.8" for t in range(500)]
    detections = tmp_path / "many.csv"
    detections.write_text("filename,onset,offset,label,confidence\n" + "\n".join(rows) + "\n")
    with ReviewServer(review_app(detections, audio, out=tmp_path / "reviewed.tsv")) as server:
        _ready(browser, server.url)
        first = len(browser.find_elements(By.CSS_SELECTOR, ".card"))
        assert 0 < first < 500
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card")) > first)
