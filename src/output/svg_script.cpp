// The CSS and JavaScript embedded in every flame graph SVG (see src/output/svg.cpp). Kept apart so
// the writer stays readable. Plain ES5, no network, no external fonts. The script relies on the
// writer's contract: frames are <g class="f"> in pre-order, each with data-i (index), data-p
// (parent index, -1 for the root), data-d (depth), data-n (name), data-v (value), data-l (the
// hover line), a <rect> and a <text>; the root <svg> carries data-w (width) and data-pad.
namespace pmprof {

extern const char* const kFlameCss;
extern const char* const kFlameScript;

const char* const kFlameCss = R"CSS(
text { font-family: Verdana, sans-serif; font-size: 12px; fill: #000; }
#title { font-size: 17px; }
.f text { pointer-events: none; }
.f:hover rect { stroke: #000; stroke-width: 0.5; cursor: pointer; }
.hidden { display: none; }
.parent { opacity: 0.5; }
.button { cursor: pointer; fill: #555; }
.button:hover { fill: #000; text-decoration: underline; }
)CSS";

// The script never contains the sequence that ends a CDATA section.
const char* const kFlameScript = R"JS(
"use strict";
(function () {
  var svg = document.getElementById("pmprof-flame");
  if (!svg) return;
  var W = +svg.getAttribute("data-w"), PAD = +svg.getAttribute("data-pad");
  var CHARW = 7.08, frames = [], zoomed = null, matchedRe = null;
  var details = document.getElementById("details");
  var reset = document.getElementById("unzoom");
  var searchBtn = document.getElementById("search");
  var matchedTxt = document.getElementById("matched");
  var nodes = svg.querySelectorAll("g.f");
  for (var i = 0; i < nodes.length; i++) {
    var g = nodes[i], r = g.querySelector("rect");
    frames.push({ g: g, r: r, t: g.querySelector("text"), i: +g.getAttribute("data-i"),
                  p: +g.getAttribute("data-p"), d: +g.getAttribute("data-d"),
                  name: g.getAttribute("data-n"), line: g.getAttribute("data-l"),
                  x: +r.getAttribute("x"), w: +r.getAttribute("width"),
                  fill: r.getAttribute("fill") });
  }
  function fit(f, x, w) {
    var chars = Math.floor((w - 6) / CHARW);
    var s = "";
    if (chars >= 3) s = f.name.length <= chars ? f.name : f.name.substring(0, chars - 2) + "..";
    f.t.textContent = s;
    f.t.setAttribute("x", (x + 3).toFixed(2));
  }
  function place(f, x, w) {
    f.r.setAttribute("x", x.toFixed(3));
    f.r.setAttribute("width", w.toFixed(3));
    fit(f, x, w);
  }
  function frameOf(e) {
    var n = e.target;
    while (n && n !== svg) {
      if (n.classList && n.classList.contains("f")) return frames[+n.getAttribute("data-i")];
      n = n.parentNode;
    }
    return null;
  }
  function zoom(z) {
    zoomed = z;
    var inside = [], ancestor = [], k;
    for (k = z; k >= 0; k = frames[k].p) ancestor[k] = true;
    var scale = (W - 2 * PAD) / frames[z].w, x0 = frames[z].x;
    for (var j = 0; j < frames.length; j++) {
      var f = frames[j];
      inside[j] = j === z || (f.p >= 0 && inside[f.p] === true);
      f.g.classList.remove("hidden", "parent");
      if (inside[j]) {
        place(f, PAD + (f.x - x0) * scale, f.w * scale);
      } else if (ancestor[j]) {
        f.g.classList.add("parent");
        place(f, PAD, W - 2 * PAD);
      } else {
        f.g.classList.add("hidden");
      }
    }
    reset.classList.remove("hidden");
  }
  function unzoom() {
    zoomed = null;
    for (var j = 0; j < frames.length; j++) {
      frames[j].g.classList.remove("hidden", "parent");
      place(frames[j], frames[j].x, frames[j].w);
    }
    reset.classList.add("hidden");
  }
  function search(re) {
    matchedRe = re;
    var covered = [], total = 0;
    for (var j = 0; j < frames.length; j++) {
      var f = frames[j], hit = re !== null && re.test(f.name);
      var parentCovered = f.p >= 0 && covered[f.p] === true;
      covered[j] = hit || parentCovered;
      if (hit && !parentCovered) total += f.w;
      f.r.setAttribute("fill", hit ? "rgb(230,0,230)" : f.fill);
    }
    if (re === null) {
      matchedTxt.textContent = "";
      searchBtn.textContent = "Search";
      return;
    }
    var pct = frames.length ? 100 * total / frames[0].w : 0;
    matchedTxt.textContent = "Matched: " + pct.toFixed(1) + "%";
    searchBtn.textContent = "Reset Search";
  }
  function askSearch() {
    if (matchedRe !== null) { search(null); return; }
    var term = window.prompt("Search for (regular expression):", "");
    if (!term) return;
    var re;
    try { re = new RegExp(term); } catch (err) { matchedTxt.textContent = "Bad regex"; return; }
    search(re);
  }
  svg.addEventListener("mouseover", function (e) {
    var f = frameOf(e);
    if (f) details.textContent = f.line;
  });
  svg.addEventListener("mouseout", function (e) {
    if (frameOf(e)) details.textContent = " ";
  });
  svg.addEventListener("click", function (e) {
    var f = frameOf(e);
    if (f) zoom(f.i);
  });
  reset.addEventListener("click", unzoom);
  searchBtn.addEventListener("click", askSearch);
  window.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && e.keyCode === 70) { e.preventDefault(); askSearch(); }
    else if (e.keyCode === 27) { search(null); if (zoomed !== null) unzoom(); }
  });
  window.pmprofFlame = { zoom: zoom, unzoom: unzoom, search: search, frames: frames };
  for (var j = 0; j < frames.length; j++) fit(frames[j], frames[j].x, frames[j].w);
  // Shareable views: file.svg#z=INDEX zooms to a frame, #s=REGEX searches (both may be given,
  // joined by '&').
  var hash = window.location.hash.replace(/^#/, "").split("&");
  for (var h = 0; h < hash.length; h++) {
    var kv = hash[h].split("="), val = decodeURIComponent(kv.slice(1).join("="));
    if (kv[0] === "z" && frames[+val]) zoom(+val);
    if (kv[0] === "s" && val) { try { search(new RegExp(val)); } catch (err) { } }
  }
  svg.setAttribute("data-ready", "1");
})();
)JS";

}  // namespace pmprof
