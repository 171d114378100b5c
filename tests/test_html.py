"""The self-contained HTML view of explanations (the browser checks are in test_browser)."""

import re

import pytest
from conftest import TINY_UNET

from bcosdiff.cli import main
from bcosdiff.explain import BcosOptions
from bcosdiff.pipeline import create_model_directory
from bcosdiff.report.html import explanation_html, explanation_page
from bcosdiff.service import explain_prompt


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model") / "tiny-bcos-x0"
    return create_model_directory(directory, "bcos-x0", unet=TINY_UNET, text={"max_length": 12})


def test_the_view_has_a_map_per_word_and_needs_no_network(pipe):
    exp = explain_prompt(
        pipe, "a red circle and a shark", steps=2, seed=0, options=BcosOptions(flag_ratio=10.0)
    )
    page = explanation_page(exp)
    words = re.findall(r'class="word( flagged)?" data-word="([^"]+)" data-map="([^"]*)"', page)
    assert [w for _, w, _ in words] == [w.text for w in exp.words]
    assert all(uri.startswith("data:image/png;base64,") for _, _, uri in words)
    assert len({uri for _, _, uri in words}) == len(words)  # every word its own map
    # With this threshold every content word is flagged, and the page says so.
    assert {w for flag, w, _ in words if flag} == set(exp.flagged_tokens) != set()
    assert "not reflected in the image" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert "<select" not in page  # one method: no selector
    assert exp._repr_html_().startswith('<div class="bcd" id="bcosdiff-')


def test_several_methods_get_a_selector_and_one_panel_each(pipe):
    run = pipe.run("a red circle", steps=2, seed=1)
    from bcosdiff.explain import get_method

    views = {m: get_method(m)(pipe).attribute(run) for m in ("bcos", "xattn", "dfcam")}
    fragment = explanation_html(views)
    assert re.findall(r'<option value="([^"]+)">', fragment) == ["bcos", "xattn", "dfcam"]
    assert re.findall(r'class="panel" data-method="([^"]+)"', fragment) == [
        "bcos",
        "xattn",
        "dfcam",
    ]


def test_explain_html_writes_the_report(pipe, tmp_path):
    out = tmp_path / "e"
    argv = ["explain", "a red circle", "-m", str(tmp_path / "m"), "--steps", "2"]
    create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET, text={"max_length": 12})
    assert main([*argv, "--method", "bcos", "--method", "xattn", "--html", "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'data-method="xattn"' in page
