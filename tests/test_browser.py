"""The HTML view in a real browser: headless Chromium driven by selenium (skipped when the
system has no chromium / chromedriver)."""

import shutil

import pytest
from conftest import TINY_UNET

from bcosdiff.explain.html import explanation_page
from bcosdiff.pipeline import create_model_directory

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
    exp = pipe.explain("a red circle and a shark", steps=2, seed=0)
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
