// The prediction report's list: filters, search and pages over the embedded examples. Only
// the current page is in the document, so 10,000 examples stay responsive.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  const state = { page: 0 };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function seconds(t) { return t === null || t === undefined ? "" : t.toFixed(2) + " s"; }

  function framesOf(videoId, firstClipOnly) {
    const video = data.videos[videoId];
    const box = el("div", { class: "frames" });
    if (!video) { box.append(el("span", { class: "meta", text: "(no frames kept)" })); return box; }
    if (video.broken) box.append(el("span", { class: "broken", text: "unreadable video" }));
    const clips = firstClipOnly ? video.clips.slice(0, 1) : video.clips;
    clips.forEach((clip, c) => {
      const row = el("div", { class: "clip" });
      if (!firstClipOnly && video.clips.length > 1) row.append(el("span", { class: "label", text: "clip " + (c + 1) }));
      for (const frame of clip) {
        row.append(el("figure", {}, el("img", { class: "thumb", src: frame.src, alt: videoId + " " + seconds(frame.t) }),
          el("figcaption", { text: seconds(frame.t) })));
      }
      box.append(row);
    });
    return box;
  }

  function verdictOf(example) {
    if (example.correct === null) return el("span", { class: "verdict", text: "no gold answer" });
    return el("span", { class: "verdict " + (example.correct ? "right" : "wrong"), text: example.correct ? "right" : "wrong" });
  }

  function qaCard(example) {
    const list = el("ol", { class: "candidates" });
    for (const c of example.candidates) {
      const isGold = String(c.label) === String(example.gold);
      list.append(el("li", { class: isGold ? "gold" : "" },
        el("span", { class: "name", text: String(c.label) }),
        el("div", {}, el("div", { class: "bar", style: "width:" + (100 * c.prob).toFixed(1) + "%" })),
        el("span", { class: "num", text: c.prob.toFixed(3) })));
    }
    const meta = "id " + example.id + (example.type ? " · type " + example.type : "") + (example.video ? " · video " + example.video : "");
    return [framesOf(example.video, false), el("div", { class: "text" },
      el("p", { class: "question", text: example.text }),
      el("p", { class: "meta", text: meta }),
      list,
      el("p", {}, el("span", { text: "gold: " }), el("b", { class: "gold-answer", text: example.gold === null ? "-" : String(example.gold) }), el("span", { text: "  " }), verdictOf(example)),
      example.broken ? el("p", { class: "broken", text: example.broken }) : null)];
  }

  function rankingCard(example) {
    const strip = el("div", { class: "strip" });
    example.top.forEach((hit, i) => {
      strip.append(el("div", { class: "video" + (hit.video_id === example.gold ? " gold" : "") },
        framesOf(hit.video_id, true),
        el("div", { class: "meta", text: (i + 1) + ". " + hit.video_id + " (" + hit.score.toFixed(3) + ")" })));
    });
    return [el("div", { class: "text" },
      el("p", { class: "question", text: example.text }),
      el("p", { class: "meta", text: "id " + example.id + " · true video " + example.gold + " at rank " + example.rank }),
      strip, verdictOf(example))];
  }

  function matches(example) {
    if ($("wrong-only").checked && example.correct !== false) return false;
    const type = $("answer-type") ? $("answer-type").value : "";
    if (type && example.type !== type) return false;
    const low = parseFloat($("min-confidence").value), high = parseFloat($("max-confidence").value);
    if (!isNaN(low) && example.confidence < low) return false;
    if (!isNaN(high) && example.confidence > high) return false;
    const query = $("search").value.trim().toLowerCase();
    if (query) {
      const haystack = [example.text, example.id, example.gold, example.prediction, example.video]
        .concat((example.candidates || []).map((c) => c.label)).join(" ").toLowerCase();
      if (!haystack.includes(query)) return false;
    }
    return true;
  }

  function render() {
    const shown = data.examples.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / data.pageSize));
    state.page = Math.min(state.page, pages - 1);
    const list = $("examples");
    list.replaceChildren();
    for (const example of shown.slice(state.page * data.pageSize, (state.page + 1) * data.pageSize)) {
      const card = el("article", { class: "example " + (example.correct === null ? "" : example.correct ? "right" : "wrong"),
        "data-id": example.id, "data-correct": String(example.correct) });
      card.append(...(data.kind === "ranking" ? rankingCard(example) : qaCard(example)));
      list.append(card);
    }
    $("shown-count").textContent = shown.length;
    $("page-label").textContent = "page " + (state.page + 1) + " of " + pages;
    $("previous-page").disabled = state.page === 0;
    $("next-page").disabled = state.page >= pages - 1;
  }

  for (const id of ["wrong-only", "answer-type", "min-confidence", "max-confidence", "search"]) {
    const input = $(id);
    if (input) input.addEventListener("input", () => { state.page = 0; render(); });
  }
  $("previous-page").addEventListener("click", () => { state.page -= 1; render(); });
  $("next-page").addEventListener("click", () => { state.page += 1; render(); });
  render();
  document.body.dataset.ready = "true";
})();
