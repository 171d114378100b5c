"""The HTML view in a real browser: headless Chromium driven by selenium (skipped when the
system has no chromium / chromedriver)."""

import shutil

import pytest
from conftest import TINY_UNET

from bcosdiff.pipeline import create_model_directory
from bcosdiff.report.html import explanation_page
from bcosdiff.service import explain_prompt

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="needs chromium and chromedriver"
)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_hovering_a_word_shows_its_map_offline(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    pipe = create_model_directory(
        tmp_path / "m", "bcos-x0", unet=TINY_UNET, text={"max_length": 12}
    )
    exp = explain_prompt(pipe, "a red circle and a shark", steps=2, seed=0)
    page = tmp_path / "report.html"
    page.write_text(explanation_page(exp), encoding="utf-8")
    browser.get(page.as_uri())
    overlay = browser.find_element(By.CSS_SELECTOR, "img.overlay")
    assert overlay.value_of_css_property("visibility") == "hidden"
    words = browser.find_elements(By.CSS_SELECTOR, ".word")
    assert [w.get_attribute("data-word") for w in words] == [w.text for w in exp.words]
    shown = []
    for word in (words[1], words[2]):
        ActionChains(browser).move_to_element(word).perform()
        assert overlay.value_of_css_property("visibility") == "visible"
        assert overlay.get_attribute("data-word") == word.get_attribute("data-word")
        shown.append(overlay.get_attribute("src"))
    assert shown[0] != shown[1] and all(s.startswith("data:image/png") for s in shown)
    browser.save_screenshot(str(tmp_path / "hover.png"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import threading

    from bcosdiff.serve import make_server

    directory = tmp_path_factory.mktemp("served") / "tiny"
    pipe = create_model_directory(directory, "bcos-x0", unet=TINY_UNET, text={"max_length": 12})
    server = make_server(pipe, port=0)
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _submit(browser, url, prompt, compare=""):
    from selenium.webdriver.common.by import By

    browser.get(url)
    browser.execute_script(
        "document.querySelector('[name=prompt]').value = arguments[0];"
        "document.querySelector('[name=compare]').value = arguments[1];"
        "document.querySelector('[name=steps]').value = 2;",
        prompt,
        compare,
    )
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_the_served_page_explains_a_prompt_and_compares_two(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _submit(browser, server, "a red circle", "a red circle and a shark")
    WebDriverWait(browser, 120).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#result .cell img.base"))
    )
    cells = browser.find_elements(By.CSS_SELECTOR, "#result .cell")
    assert len(cells) == 2
    bars = cells[1].find_elements(By.CSS_SELECTOR, ".word .bar")
    words = [w.get_attribute("data-word") for w in cells[1].find_elements(By.CSS_SELECTOR, ".word")]
    assert words == ["a", "red", "circle", "and", "a", "shark"] and len(bars) == len(words)
    assert "done" in browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(tmp_path / "served.png"))


@pytest.mark.parametrize(
    ("prompt", "message"), [("", "the prompt is empty"), ("x" * 10_000, "the limit is 300")]
)
def test_the_served_page_answers_bad_prompts_clearly(browser, server, prompt, message):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _submit(browser, server, prompt)
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 30).until(lambda _: message in status.text)
    assert "error" in status.get_attribute("class") and "Traceback" not in browser.page_source
