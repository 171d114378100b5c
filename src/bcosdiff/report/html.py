"""A self-contained HTML view of explanations: one file, images inlined, no network.

The page shows the image with every word's map over it (hover or click a word), the
relevance bars with the flagged (red) and misbound (orange) words marked, the binding
findings in words, the reconstructions, the seeds tried by ``--regenerate``, and, when
several methods explained the same image, a selector between them. The same markup is what
:meth:`Explanation._repr_html_` shows in a notebook.
"""

from __future__ import annotations

import base64
import html
import io
import uuid
from collections.abc import Mapping

import numpy as np
from PIL import Image

from ..explain.explanation import Explanation, set_html_view
from ..pictures import to_image
from .overlays import map_overlays, reconstruction_rgb, word_overlays

__all__ = ["explanation_html", "explanation_page"]

DISPLAY = 256  # pixels on screen for the generated image

_STYLE = """
.bcd{font-family:system-ui,sans-serif;color:#222;max-width:980px}
.bcd h2{font-size:18px;margin:4px 0}.bcd .meta{color:#666;font-size:13px;margin-bottom:8px}
.bcd .row{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
.bcd .stage{position:relative;width:256px;height:256px}
.bcd .stage img{position:absolute;left:0;top:0;width:256px;height:256px;
 image-rendering:pixelated}
.bcd .words{display:flex;flex-direction:column;gap:3px;min-width:300px}
.bcd .word{display:flex;align-items:center;gap:6px;cursor:pointer;padding:2px 4px;
 border-radius:4px;font-size:14px}
.bcd .word:hover,.bcd .word.active{background:#eef3fb}
.bcd .word .label{width:90px;text-align:right}
.bcd .word .bar{height:12px;background:#2c7fb8;border-radius:2px}
.bcd .word.flagged .bar{background:#c0392b}.bcd .word.flagged .label{color:#c0392b}
.bcd .word.misbound .bar{background:#e67e22}.bcd .word.misbound .label{color:#e67e22}
.bcd .word.unknown .label{font-style:italic}.bcd .unknownnote{color:#555}
.bcd .word .value{font-size:12px;color:#555}
.bcd .small img{width:128px;height:128px;image-rendering:pixelated;display:block}
.bcd .small figcaption{font-size:12px;color:#555;text-align:center}
.bcd figure{margin:0}.bcd .note{font-size:12px;color:#555;margin-top:6px;max-width:256px}
.bcd .flagnote{color:#c0392b;font-size:14px;margin:6px 0}
.bcd table{border-collapse:collapse;font-size:13px}.bcd td,.bcd th{padding:2px 8px;
 border-bottom:1px solid #ddd}
"""

_SCRIPT = """
(function(){
 var root=document.getElementById('%(id)s');
 function show(panel){
  root.querySelectorAll('.panel').forEach(function(p){p.style.display=p.dataset.method===panel?'':'none';});
 }
 var select=root.querySelector('select.method');
 if(select){select.addEventListener('change',function(){show(select.value);});show(select.value);}
 root.querySelectorAll('.panel').forEach(function(panel){
  var overlay=panel.querySelector('img.overlay'), base=panel.querySelector('img.base');
  var chosen=null;
  function paint(word){
   if(word===null){overlay.style.visibility='hidden';base.src=base.dataset.image;
    overlay.removeAttribute('data-word');return;}
   base.src=base.dataset.faded;overlay.src=word.dataset.map;overlay.style.visibility='visible';
   overlay.setAttribute('data-word',word.dataset.word);
  }
  panel.querySelectorAll('.word').forEach(function(word){
   word.addEventListener('mouseenter',function(){paint(word);});
   word.addEventListener('mouseleave',function(){paint(chosen);});
   word.addEventListener('click',function(){
    panel.querySelectorAll('.word').forEach(function(w){w.classList.remove('active');});
    chosen=(chosen===word)?null:word; if(chosen){word.classList.add('active');} paint(chosen);
   });
  });
 });
})();
"""


def _png(array_or_image) -> str:
    """A ``data:`` URI of a PIL image or an ``(H, W, 3|4)`` float array in ``[0, 1]``."""
    image = array_or_image
    if not isinstance(image, Image.Image):
        image = to_image(np.clip(array_or_image, 0, 1))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _faded(exp: Explanation) -> np.ndarray:
    grey = np.asarray(exp.image.convert("L"), dtype=float) / 255.0
    return np.repeat((0.75 + 0.25 * grey)[..., None], 3, axis=2)


def _word_rows(exp: Explanation) -> str:
    """One row per word: its map (as a data attribute), relevance bar and marks."""
    esc = html.escape
    overlays = None
    if exp.contribution_maps is not None:
        overlays, _ = word_overlays(exp)
    elif exp.token_maps is not None or exp.saliency is not None:
        overlays, _ = map_overlays(exp)
    flagged, misbound = set(exp.flagged_tokens), set(exp.misbound_words)
    unknown = set(exp.unknown_words)
    scores = [w.relevance for w in exp.words] if exp.relevance is not None else None
    top = max(scores) if scores else 0.0
    rows = []
    for k, word in enumerate(exp.words):
        if overlays is None:
            map_uri = ""
        else:
            map_uri = _png(overlays[0] if exp.saliency is not None else overlays[k])
        share = "" if scores is None else f"{100 * scores[k]:.1f}%"
        width = 0 if not top or scores is None else int(200 * scores[k] / top)
        mark = " flagged" if word.text in flagged else " misbound" if word.text in misbound else ""
        if word.text.lower() in unknown:
            mark += " unknown"
        rows.append(
            f'<div class="word{mark}" data-word="{esc(word.text)}" data-map="{map_uri}">'
            f'<span class="label">{esc(word.text)}</span>'
            f'<span class="bar" style="width:{width}px"></span>'
            f'<span class="value">{share}</span></div>'
        )
    return "".join(rows)


def _finding_notes(exp: Explanation) -> str:
    """The words the image does not reflect, never saw in training, or bound elsewhere."""
    esc = html.escape
    notes = ""
    if exp.flagged_tokens:
        notes = (
            '<div class="flagnote">not reflected in the image: '
            + ", ".join(esc(f) for f in sorted(set(exp.flagged_tokens)))
            + "</div>"
        )
    if exp.unknown_words:
        notes += (
            '<div class="flagnote unknownnote">not in the model\'s training captions: '
            + ", ".join(esc(w) for w in exp.unknown_words)
            + "</div>"
        )
    findings = exp.binding[0]
    if findings:
        notes += (
            '<div class="flagnote bindnote">bound to another object: '
            + "; ".join(esc(f.sentence()) for f in findings)
            + "</div>"
        )
    return notes


def _reconstruction_figures(exp: Explanation) -> str:
    """Small figures of the reconstruction W(x)·x and its normalised form, where computed."""
    esc = html.escape
    extra = []
    if exp.reconstruction is not None:
        extra.append(("reconstruction W(x)·x", _png(to_image(reconstruction_rgb(exp)))))
    if exp.normalized_reconstruction is not None:
        extra.append(("normalised reconstruction", _png(to_image(exp.normalized_reconstruction))))
    return "".join(
        f'<figure class="small"><img src="{uri}" alt="{esc(title)}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for title, uri in extra
    )


def _panel(exp: Explanation, name: str) -> str:
    """The image, its word maps and relevance bars for one method."""
    esc = html.escape
    image_uri, faded_uri = _png(exp.image), _png(_faded(exp))
    if exp.saliency is not None:
        what = f"{esc(exp.method)}: one map for the whole image (the same for every word)"
    elif exp.contribution_maps is not None:
        what = (
            "colour = what the word painted, opacity = its share of the pixel's departure from "
            "the background"
        )
    else:
        what = f"{esc(exp.method)} map (one scale for all words)"
    return (
        f'<div class="panel" data-method="{esc(name)}">'
        f'<div class="row"><div><div class="stage">'
        f'<img class="base" src="{image_uri}" data-image="{image_uri}" '
        f'data-faded="{faded_uri}" alt="generated image">'
        f'<img class="overlay" src="" style="visibility:hidden" alt="word map"></div>'
        f'<div class="note">hover or click a word to see its map; {what}</div></div>'
        f'<div class="words">{_word_rows(exp)}{_finding_notes(exp)}</div>'
        f'<div class="row">{_reconstruction_figures(exp)}</div></div></div>'
    )


def explanation_html(
    explanations: Explanation | Mapping[str, Explanation], element_id: str = "bcosdiff-view"
) -> str:
    """The view of one explanation, or of several methods' explanations of the same image
    (``{method: explanation}``; a selector switches between them), as an HTML fragment with
    its own style and script."""
    if not isinstance(explanations, Mapping):
        explanations = {explanations.method: explanations}
    if not explanations:
        raise ValueError("nothing to show")
    first = next(iter(explanations.values()))
    esc = html.escape
    meta = (
        f"model {esc(first.model)} · seed {first.seed} · {first.steps} steps · "
        f"guidance {first.guidance:g}"
        + ("" if first.complete else " · incomplete (fresh noise between steps)")
    )
    selector = ""
    if len(explanations) > 1:
        options = "".join(f'<option value="{esc(m)}">{esc(m)}</option>' for m in explanations)
        selector = f'<label>method <select class="method">{options}</select></label>'
    attempts = ""
    if len(first.attempts) > 1:
        rows = "".join(
            f"<tr><td>{seed}</td><td>{esc(', '.join(flags)) or 'none'}</td>"
            f"<td>{esc(', '.join(misbound)) or 'none'}</td></tr>"
            for seed, flags, misbound in first.attempts
        )
        attempts = (
            "<h3>seeds tried (--regenerate)</h3><table><tr><th>seed</th>"
            f"<th>flagged words</th><th>misbound words</th></tr>{rows}</table>"
        )
    panels = "".join(_panel(exp, name) for name, exp in explanations.items())
    script = _SCRIPT % {"id": element_id}
    return (
        f'<div class="bcd" id="{esc(element_id)}"><style>{_STYLE}</style>'
        f'<h2>{esc(first.prompt)}</h2><div class="meta">{meta}</div>{selector}'
        f"{panels}{attempts}<script>{script}</script></div>"
    )


def explanation_page(explanations: Explanation | Mapping[str, Explanation]) -> str:
    """A whole HTML document around :func:`explanation_html` (for ``explain --html``)."""
    first = next(iter(explanations.values())) if isinstance(explanations, Mapping) else explanations
    title = html.escape(f"bcosdiff: {first.prompt}")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body>{explanation_html(explanations)}</body></html>\n"
    )


def _notebook_view(explanation: Explanation) -> str:
    return explanation_html(explanation, element_id=f"bcosdiff-{uuid.uuid4().hex[:12]}")


set_html_view(_notebook_view)
