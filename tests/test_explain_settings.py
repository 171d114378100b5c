"""The explain section of a model directory, read and checked in one place."""

import pytest

from bcosdiff.explain.binding import DEFAULT_STRAY_LIMIT
from bcosdiff.explain.settings import ExplainSettings
from bcosdiff.explain.tokens import DEFAULT_FLAG_RATIO


def test_settings_read_their_keys_and_leave_the_records():
    section = {
        "flag_ratio": 0.2,
        "flag_signal": "colour_change",
        "stray_limit": 0.5,
        "compounds": ["glass of milk"],
        "vocabulary": ["Cat", "face"],
        "depicting": ["Cat"],
        "calibration": {"ratio": 0.2},  # provenance: kept in the file, not a setting
        "flag_ratio_source": "eval flags",
    }
    settings = ExplainSettings.from_section(section)
    assert settings == ExplainSettings(
        0.2, "colour_change", 0.5, ("glass of milk",), {"cat", "face"}, {"cat"}
    )
    assert settings.vocabulary == frozenset({"cat", "face"})
    empty = ExplainSettings.from_section({})
    assert (empty.flag_ratio, empty.stray_limit) == (DEFAULT_FLAG_RATIO, DEFAULT_STRAY_LIMIT)
    assert empty.vocabulary is None and empty.depicting is None and empty.compounds == ()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"flag_ratio": -1}, "flag_ratio"),
        ({"flag_ratio": True}, "flag_ratio"),
        ({"flag_signal": "loudness"}, "flag_signal"),
        ({"stray_limit": 1.5}, "stray_limit"),
        ({"compounds": "glass of milk"}, "compounds"),
        ({"vocabulary": [1, 2]}, "vocabulary"),
        ({"depicting": "cat"}, "depicting"),
    ],
)
def test_a_bad_value_names_its_key(section, key):
    with pytest.raises(ValueError, match=f"bad 'explain.{key}'"):
        ExplainSettings.from_section(section)
    with pytest.raises(ValueError, match="must be a mapping"):
        ExplainSettings.from_section(["flag_ratio"])
