"""Binding diagnostics on toy explanations whose maps are known."""

import json
from dataclasses import replace

import numpy as np
import pytest

from bcosdiff.data.shapes import caption_words
from bcosdiff.explain.binding import (
    drawn_objects,
    find_misbound,
    phrase_stray,
    place_words,
    word_densities,
)
from bcosdiff.explain.phrases import parse_phrases
from bcosdiff.service import explain_prompt


def _scene(touching: bool = False):
    """A 16×16 white image with a red block on the left and a blue block on the right."""
    image = np.full((16, 16, 3), 255, np.uint8)
    left = np.zeros((16, 16), bool)
    right = np.zeros((16, 16), bool)
    left[4:12, 1:7] = True
    right[4:12, (7 if touching else 9) : 15] = True
    image[left] = (220, 30, 30)
    image[right] = (30, 60, 220)
    return image, left, right


def _maps(words, where):
    maps = np.zeros((len(words), 16, 16))
    for word, mask in where.items():
        maps[words.index(word)][mask] = 1.0
    return maps


def test_a_word_on_another_phrases_object_is_misbound_and_a_bound_one_is_not():
    image, left, right = _scene()
    words = caption_words("a red circle and a blue square")
    phrases = parse_phrases(words)
    red, circle = words.index("red"), words.index("circle")
    # "red" painted the square's object, not the circle's: a binding error.
    wrong = _maps(words, {"circle": left, "red": right, "square": right, "blue": right})
    paint = np.array([2.0 if w in ("circle", "square") else 1.0 for w in words])
    findings, objects, placed = find_misbound(image, words, wrong, phrases, weights=paint)
    assert [o.name for o in objects] == ["circle", "square"]
    assert [(f.word, f.noun, f.phrase, f.drew, f.home) for f in findings] == [
        ("red", "circle", "red circle", "square", "circle")
    ]
    assert findings[0].share == 1.0 and placed[red].stray == 1.0
    assert placed[circle].stray == 0.0  # the noun is at home on its phrase's object
    assert (
        findings[0].sentence() == '"red circle" split: "red" drew the square, the rest the circle'
    )
    # The home is where the phrase painted most: when "red" paints more, the noun strays.
    heavy = paint.copy()
    heavy[red] = 3.0
    (finding,) = find_misbound(image, words, wrong, phrases, weights=heavy)[0]
    assert (finding.word, finding.drew, finding.home) == ("circle", "circle", "square")
    # A word is judged alone: equal weights do not average the stray word away.
    assert find_misbound(image, words, wrong, phrases)[0] != []
    assert find_misbound(image, words, wrong, phrases, stray_limit=1.0)[0] == []
    right_maps = _maps(words, {"circle": left, "red": left, "square": right, "blue": right})
    assert find_misbound(image, words, right_maps, phrases, weights=paint)[0] == []
    # A word whose map lies on no object (a background smear) is not misbound.
    smear = right_maps.copy()
    smear[red] = 0.0
    smear[red, 0, :] = 1.0
    assert find_misbound(image, words, smear, phrases, weights=paint)[0] == []


def test_a_words_place_is_its_density_not_its_mass():
    """A word painted evenly over a small and a large object is as much on one as on the
    other; by summed mass the large object would hold it."""
    image = np.full((16, 16, 3), 255, np.uint8)
    small, large = np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    small[2:6, 2:6] = True  # 16 pixels
    large[4:14, 8:15] = True  # 70 pixels
    image[small], image[large] = (220, 30, 30), (30, 60, 220)
    words = caption_words("a red circle and a blue square")
    phrases = parse_phrases(words)
    maps = _maps(words, {"circle": small, "red": small | large, "square": large, "blue": large})
    objects = drawn_objects(image, maps, [p.noun for p in phrases])
    densities = word_densities(maps, objects)
    assert densities[words.index("red")].tolist() == [1.0, 1.0]
    placed = place_words(maps, objects, phrases)
    assert placed[words.index("red")].home == 0 and placed[words.index("red")].stray == 0.5
    assert phrase_stray(phrases[0], placed) == (0.5, words.index("red"))
    assert phrase_stray(phrases[1], placed) == (0.0, None)  # blue and square: all at home


def test_touching_objects_are_split_where_different_nouns_dominate():
    image, left, right = _scene(touching=True)
    words = caption_words("a red circle and a blue square")
    nouns = [p.noun for p in parse_phrases(words)]
    maps = _maps(words, {"circle": left, "square": right})
    objects = drawn_objects(image, maps, nouns)
    assert len(objects) == 2
    assert np.array_equal(objects[0].mask, left) and np.array_equal(objects[1].mask, right)
    # With one noun's map over both, the region stays one object.
    maps = _maps(words, {"circle": left | right})
    assert len(drawn_objects(image, maps, nouns)) == 1


def _toy_explanation(maps, image, words, seed=0):
    """Nouns paint twice as much as the other words, so each phrase's home is its noun's
    object."""
    import torch
    from PIL import Image

    from bcosdiff.explain.explanation import Explanation
    from bcosdiff.explain.tokens import Word

    def paint(word):
        return 2.0 if word in ("circle", "square") else 1.0

    return Explanation(
        prompt=" ".join(words), seed=seed, steps=1, model="toy", tokens=words,
        relevance=[1 / len(words)] * len(words), contribution_maps=None, reconstruction=None,
        normalized_reconstruction=None, reconstruction_mse=None, image=Image.fromarray(image),
        sample=torch.zeros(6, 16, 16), flagged_tokens=[],
        words=[Word(w, [k], 1 / len(words), colour_change=paint(w)) for k, w in enumerate(words)],
        token_positions=[[k] for k in range(len(words))], method="toy",
        token_maps=torch.from_numpy(maps).float(),
    )  # fmt: skip


def test_regenerate_retries_until_no_word_is_misbound(tmp_path):
    """A scripted method whose maps misbind "red" for seeds 3 and 4 and bind it for 5."""
    from conftest import TINY_UNET

    from bcosdiff.explain.methods import AttributionMethod
    from bcosdiff.explain.registry import METHODS, register_method
    from bcosdiff.pipeline import create_model_directory

    image, left, right = _scene()
    words = caption_words("a red circle and a blue square")

    class Scripted(AttributionMethod):
        name, flags_words, needs_sample = "scripted", True, False

        def _attribute(self, run, options):
            red = right if run.seed < 5 else left
            maps = _maps(words, {"circle": left, "red": red, "square": right, "blue": right})
            return _toy_explanation(maps, image, words, seed=run.seed)

    pipe = create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET)
    register_method("scripted", Scripted)
    try:
        exp = explain_prompt(
            pipe, " ".join(words), steps=1, seed=3, method="scripted", regenerate=5
        )
        assert exp.attempts == [(3, [], ["red"]), (4, [], ["red"]), (5, [], [])]
        assert exp.seed == 5 and exp.misbound_words == []
        stuck = explain_prompt(
            pipe, " ".join(words), steps=1, seed=1, method="scripted", regenerate=2
        )
        assert [s for s, *_ in stuck.attempts] == [1, 2, 3] and stuck.seed == 1
        assert stuck.misbound_words == ["red"]
        # A word can stray no further than all of its map.
        pipe.explain_settings = replace(pipe.explain_settings, stray_limit=1.0)
        assert explain_prompt(
            pipe, " ".join(words), steps=1, seed=3, method="scripted"
        ).attempts == [(3, [], [])]
    finally:
        METHODS.pop("scripted")


def test_findings_reach_the_json_and_the_html_view():

    from bcosdiff.report.html import explanation_html

    image, left, right = _scene()
    words = caption_words("a red circle and a blue square")
    maps = _maps(words, {"circle": left, "red": right, "square": right, "blue": right})
    exp = _toy_explanation(maps, image, words)
    assert exp.misbound_words == ["red"]
    (entry,) = exp.to_dict()["misbound_words"]
    assert entry["word"] == "red" and entry["drew"] == "square" and entry["noun"] == "circle"
    assert entry["phrase"] == "red circle" and entry["home"] == "circle"
    assert entry["finding"] == '"red circle" split: "red" drew the square, the rest the circle'
    page = explanation_html(exp)
    assert "bound to another object" in page and "&quot;red&quot; drew the square" in page
    assert page.count('class="word misbound"') == 1 and 'data-word="red"' in page


def _record(prompt, *objects, seed=None):
    """Objects as (missed, weakest peer ratio, stray share)."""
    from bcosdiff.evaluation.binding import ObjectRecord, PromptRecord

    made = tuple(ObjectRecord(missed=m, stray=s, weakest=w) for m, w, s in objects)
    return PromptRecord(prompt, prompt if seed is None else seed, made)


def test_the_limits_are_the_best_rule_within_the_false_positive_budget():
    from bcosdiff.evaluation.binding import binding_rates, calibrate_binding
    from bcosdiff.evaluation.binding_report import RuleRates

    # Missed objects stray 0.9 / 0.7 / 0.3 (the last with a weak word, ratio 0.05); drawn
    # ones stray 0.1 … 0.6, one with a word at ratio 0.2.
    records = [
        _record(0, (True, 1.0, 0.9), (False, 1.0, 0.1)),
        _record(1, (True, 1.0, 0.7), (False, 0.2, 0.2)),
        _record(2, (True, 0.05, 0.3), (False, 1.0, 0.6)),
        _record(3, (False, 1.0, 0.4), (False, 1.0, 0.15)),
    ]
    # The flag ratio flags no drawn object at quantile 0 (the drawn objects' lowest ratio,
    # 0.2: only ratios below it are flagged); with no false positive allowed the stray limit
    # is the drawn objects' largest stray share, 0.6.
    ratio, limit = calibrate_binding(records, max_fpr=0.0, flag_quantile=0.0)
    assert ratio == 0.2 and limit == 0.6
    rates = binding_rates(records, ratio, limit)
    assert rates.either == RuleRates(tpr=1.0, fpr=0.0)
    assert rates.flagged == RuleRates(tpr=1 / 3, fpr=0.0)
    assert rates.misbound == RuleRates(tpr=2 / 3, fpr=0.0)
    assert rates.auroc_stray == pytest.approx(1 - 2 / 15)  # 0.3 below 0.4 and 0.6
    # A quantile of one drawn object in five flags below the second-lowest ratio (1.0): the
    # drawn object at 0.2 becomes a false positive, and within a budget of 0.2 the stray limit
    # then cannot afford another (it stays at 0.6); with no budget nothing fits.
    ratio, limit = calibrate_binding(records, max_fpr=0.2, flag_quantile=0.2)
    assert ratio == 1.0 and limit == 0.6
    assert binding_rates(records, ratio, limit).either == RuleRates(tpr=1.0, fpr=0.2)
    with pytest.raises(ValueError, match="flag ratio alone exceeds"):
        calibrate_binding(records, max_fpr=0.0, flag_quantile=0.2)
    # Objects all missed (or all drawn) cannot calibrate anything.
    with pytest.raises(ValueError, match="both missed and drawn"):
        calibrate_binding([_record(0, (True, 1.0, 0.5))])


def test_a_saved_study_reads_back_as_saved_and_a_broken_one_is_refused(tmp_path):
    from bcosdiff.evaluation.binding import BindingReport, load_records, read_study, save_study

    out = tmp_path / "study"
    assert read_study(out) is None  # nothing saved: a fresh run
    records = {"calibration": [_record(0, (True, 0.05, 0.9), (False, 1.0, 0.1))], "measured": []}
    # A report saved while the calibration prompts are still being explained.
    settings = {"model": "m", "method": "bcos", "steps": 2, "calibration_prompts": 4}
    report = BindingReport(settings=settings)
    save_study(out, report, records)
    assert sorted(p.name for p in out.iterdir()) == ["binding.json", "binding.md", "records.json"]
    saved_report, rows = read_study(out)
    assert saved_report == report and load_records(rows) == records
    assert "still being explained" in (out / "binding.md").read_text()
    (out / "records.json").write_text('{"measured": [{"prompt": 0}]}')
    with pytest.raises(ValueError, match="malformed records"):
        read_study(out)
    (out / "records.json").write_text("{}")
    (out / "binding.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a report"):
        read_study(out)


def test_regeneration_keeps_the_first_seed_without_findings(monkeypatch):
    from bcosdiff.evaluation import binding

    # Prompt 0: seed 0 is wrong with a finding, seed 1 right and clean.
    # Prompt 1: right at seed 1 with one finding; later seeds wrong with two findings.
    later = {
        (0, 1): _record(0, (False, 1.0, 0.1), (False, 1.0, 0.1), seed=1),
        **{
            (1, 1 + k): _record(1, (True, 0.01, 0.9), (True, 0.01, 0.1), seed=1 + k)
            for k in range(1, 6)
        },
    }

    def scripted(pipe, truth, prompt, seed, **_):
        return later[prompt, seed]

    monkeypatch.setattr(binding, "explain_and_check", scripted)
    first = [
        _record(0, (True, 1.0, 0.9), (False, 1.0, 0.1)),
        _record(1, (False, 1.0, 0.9), (False, 1.0, 0.1)),
    ]
    result = binding.regeneration_success(
        None, None, first, budgets=(3, 5), flag_ratio=0.1, stray_limit=0.5
    )
    assert result.first_seed == 0.5  # prompt 1's first seed is right
    assert result.regenerate == {3: 1.0, 5: 1.0}  # fewest findings
    assert result.images_per_prompt == {3: (2 + 4) / 2, 5: (2 + 6) / 2}


def test_eval_binding_calibrates_measures_and_writes_the_limits(tmp_path, monkeypatch, capsys):

    from conftest import TINY_UNET

    from bcosdiff.cli import main
    from bcosdiff.evaluation import binding
    from bcosdiff.modeldir import read_config, update_config_section
    from bcosdiff.pipeline import create_model_directory

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET)
    stale = {"phrasings": ["known"]}
    update_config_section(
        model, "explain", flag_signal="relevance", note="kept", phrasing_calibration=stale
    )

    def scripted(pipe, truth, prompt, seed, **_):  # even seeds miss an object that strays
        missed = seed % 2 == 0
        return _record(prompt, (missed, 1.0, 0.8 if missed else 0.2), (False, 1.0, 0.1), seed=seed)

    monkeypatch.setattr(binding, "explain_and_check", scripted)
    out = tmp_path / "report"
    argv = ["eval", "binding", "-m", str(model), "--prompts", "4", "--calibration-prompts", "4"]
    argv += ["--steps", "1", "--out", str(out), "--no-progress", "--write"]
    assert main(argv) == 0
    report = json.loads((out / "binding.json").read_text())
    assert report["calibration"]["stray_limit"] == 0.2  # the drawn objects' largest stray
    assert report["calibration"]["flag_ratio"] == 1.0  # below every drawn object's words
    assert report["test"]["either"] == {"tpr": 1.0, "fpr": 0.0}
    assert report["regeneration"]["regenerate_3"] == 1.0  # the next (odd) seed is right
    assert "| --regenerate 5 |" in capsys.readouterr().out
    explain = read_config(model)["explain"]
    assert explain["stray_limit"] == 0.2 and explain["flag_ratio"] == 1.0
    assert explain["note"] == "kept" and explain["flag_ratio_source"] == "eval binding"
    assert "phrasing_calibration" not in explain  # the record of the limits replaced
    assert main([*argv[:-1], "--method", "xattn", "--write"]) == 2  # another method's limits


def test_binding_study_reports_each_prompt_and_stage_as_it_completes(tmp_path, monkeypatch):
    """A long study reports after every explained prompt, after calibration, before the
    regeneration test and at the end; a report made before the measured stage says its
    rates are the calibration's, and one made before calibration says how far it got."""
    from conftest import TINY_UNET

    from bcosdiff.evaluation import binding
    from bcosdiff.pipeline import create_model_directory, load_pipeline

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET)
    pipe = load_pipeline(model)

    def scripted(pipe, truth, prompt, seed, **_):
        missed = seed % 2 == 0
        return _record(prompt, (missed, 1.0, 0.8 if missed else 0.2), (False, 1.0, 0.1), seed=seed)

    monkeypatch.setattr(binding, "explain_and_check", scripted)
    calls = []

    def seen(report, records):
        calls.append((sorted(report.to_dict()), {k: len(v) for k, v in records.items()}))
        markdown = binding.binding_markdown(report)
        if report.calibration is None:
            assert "still being explained" in markdown
        elif report.test is None:
            assert "still to come" in markdown
        else:
            assert "still" not in markdown

    report, records = binding.binding_study(
        pipe,
        method="bcos",
        prompts=3,
        calibration_prompts=4,
        budgets=(3,),
        steps=1,
        on_progress=seen,
    )
    counts = [c for _, c in calls]
    assert counts == [
        *[{"calibration": n} for n in (1, 2, 3, 4)],
        {"calibration": 4},  # calibrated
        *[{"calibration": 4, "measured": n} for n in (1, 2, 3)],
        *[{"calibration": 4, "measured": 3}] * 2,  # before regenerating, and at the end
    ]
    keys = [set(k) for k, _ in calls]
    assert all("calibration" not in k for k in keys[:4]) and "calibration" in keys[4]
    assert "test" not in keys[7] and "test" in keys[8] and "regeneration" not in keys[8]
    assert "regeneration" in keys[9]
    assert len(records["calibration"]) == 4 and len(records["measured"]) == 3
    assert (pipe.explain_settings.flag_ratio, pipe.explain_settings.stray_limit) == (1.0, 0.2)


def test_eval_binding_resumes_from_the_prompts_it_saved(tmp_path, monkeypatch, capsys):
    """--resume reuses the explained prompts of a run with the same settings (another
    false-positive budget needs no new images) and refuses those of other settings."""
    from conftest import TINY_UNET

    from bcosdiff.cli import main
    from bcosdiff.evaluation import binding
    from bcosdiff.pipeline import create_model_directory

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET)
    calls = []

    def scripted(pipe, truth, prompt, seed, **_):
        calls.append(seed)
        missed = seed % 2 == 0
        return _record(prompt, (missed, 1.0, 0.8 if missed else 0.2), (False, 1.0, 0.1), seed=seed)

    monkeypatch.setattr(binding, "explain_and_check", scripted)
    out = tmp_path / "report"
    argv = ["eval", "binding", "-m", str(model), "--prompts", "3", "--calibration-prompts", "4"]
    argv += ["--steps", "1", "--out", str(out), "--no-progress", "--regenerate", "0"]
    assert main([*argv, "--resume"]) == 0  # nothing saved yet: a fresh run
    assert len(calls) == 7
    calls.clear()
    assert main([*argv, "--resume", "--max-fpr", "0.5"]) == 0
    assert calls == []  # every prompt came from records.json
    capsys.readouterr()
    assert main([*argv[:-2], "--steps", "2", "--regenerate", "0", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "made with other steps" in err
    # Cut short in the measured stage: the saved prefix is kept, the rest explained.
    rows = json.loads((out / "records.json").read_text())
    rows["measured"] = rows["measured"][:1]
    (out / "records.json").write_text(json.dumps(rows))
    assert main([*argv, "--resume"]) == 0
    assert len(calls) == 2 and calls == sorted(calls)  # the two measured prompts left
    saved = json.loads((out / "records.json").read_text())
    assert [len(saved[k]) for k in ("calibration", "measured")] == [4, 3]
    calls.clear()
    more = [*argv[:5], "4", *argv[6:]]  # one more measured prompt: only it is explained
    assert main([*more, "--resume"]) == 0
    assert len(calls) == 1
    assert json.loads((out / "binding.json").read_text())["prompts"] == 4
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2  # fewer would save over the fourth: refused
    assert "more prompts than asked" in capsys.readouterr().err
    assert len(json.loads((out / "records.json").read_text())["measured"]) == 4
    (out / "records.json").write_text("{not json")
    assert main([*argv, "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_eval_binding_refuses_methods_with_one_map_for_the_image(tmp_path, monkeypatch, capsys):
    """DF-CAM and DF-RISE map the whole image, not each word: binding cannot be read from
    them, so the study says so before explaining anything (it used to report AUROC 0.5)."""
    from conftest import TINY_UNET

    from bcosdiff.cli import main
    from bcosdiff.evaluation import binding
    from bcosdiff.explain.registry import word_map_methods
    from bcosdiff.pipeline import create_model_directory

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET)
    calls = []
    monkeypatch.setattr(binding, "explain_and_check", lambda *a, **k: calls.append(a))
    for method in ("dfcam", "dfrise"):
        argv = ["eval", "binding", "-m", str(model), "--method", method, "--no-progress"]
        assert main([*argv, "--out", str(tmp_path / method)]) == 2
        err = capsys.readouterr().err
        assert f"'{method}' gives one map for the whole image" in err and "xattn" in err
        assert len(err.strip().splitlines()) == 1
    assert calls == []
    assert {"bcos", "gradxinput", "xattn"} <= set(word_map_methods())
    assert not {"dfcam", "dfrise"} & set(word_map_methods())


def test_a_models_compounds_reach_its_explanations_phrases(tmp_path):
    """config.json's explain.compounds keep a trained multi-word name in one phrase of every
    explanation (so its binding reads "glass of milk" as one object); a bad list is refused."""
    from conftest import TINY_UNET

    from bcosdiff.errors import ModelLoadError
    from bcosdiff.modeldir import update_config_section
    from bcosdiff.pipeline import create_model_directory, load_pipeline

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET)
    prompt = "a glass of milk and a rocket"

    def phrases(pipe):
        exp = explain_prompt(pipe, prompt, steps=1, seed=0)
        return [[exp.words[i].text for i in p.words] for p in exp.phrases]

    assert phrases(load_pipeline(model)) == [["glass"], ["milk"], ["rocket"]]
    update_config_section(model, "explain", compounds=["glass of milk"])
    pipe = load_pipeline(model)
    assert pipe.explain_settings.compounds == ("glass of milk",)
    assert phrases(pipe) == [["glass", "milk"], ["rocket"]]  # "of" is no content word
    update_config_section(model, "explain", compounds="glass of milk")
    with pytest.raises(ModelLoadError, match="explain.compounds"):
        load_pipeline(model)


def test_the_regenerate_policy_keeps_the_first_clean_attempt_else_the_fewest_findings():
    from bcosdiff.service import kept_attempt

    assert kept_attempt([0]) == 0
    assert kept_attempt([2, 0, 0]) == 1  # the first without a finding
    assert kept_attempt([2, 1, 1, 3]) == 1  # none clean: the fewest, the earliest of equals
    assert kept_attempt([3, 3]) == 0


def test_a_full_report_reads_back_from_its_json_as_it_was():
    from bcosdiff.evaluation.binding import BindingReport, binding_markdown, binding_rates
    from bcosdiff.evaluation.binding_report import BindingCalibration, RegenerationSuccess

    records = [
        _record(0, (True, 0.05, 0.9), (False, 1.0, 0.1)),
        _record(1, (False, 1.0, 0.3), (True, 1.0, 0.6)),
    ]
    rates = binding_rates(records, 0.1, 0.5)
    report = BindingReport(
        settings={"model": "m", "method": "bcos", "data": "shapes", "steps": 2, "guidance": 2.0}
        | {"prompts": 2, "seed": 1, "calibration_prompts": 2, "calibration_seed": 0},
        calibration=BindingCalibration(
            prompts=2, seed=0, max_fpr=0.15, flag_ratio=0.1, stray_limit=0.5, rates=rates
        ),
        test=rates,
        regeneration=RegenerationSuccess(
            prompts=2, first_seed=0.5, regenerate={3: 1.0}, images_per_prompt={3: 2.5}
        ),
    )
    saved = json.loads(json.dumps(report.to_dict()))
    assert saved["regeneration"] == {
        "prompts": 2,
        "first_seed": 0.5,
        "regenerate_3": 1.0,
        "images_per_prompt_3": 2.5,
    }
    assert saved["test"]["either"] == {"tpr": 1.0, "fpr": 0.0}
    again = BindingReport.from_dict(saved)
    assert again == report and binding_markdown(again) == binding_markdown(report)
    del saved["test"]["flagged"]
    with pytest.raises(ValueError, match="malformed report"):
        BindingReport.from_dict(saved)
