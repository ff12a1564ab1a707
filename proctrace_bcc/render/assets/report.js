// proctrace-bcc HTML report: reads the JSON data block, draws a virtualized canvas timeline.
// All text from the recording reaches the page through textContent or canvas fillText,
// never through innerHTML.
(function () {
  "use strict";
  var t0 = performance.now();
  var D = JSON.parse(document.getElementById("proctrace-data").textContent);
  // Tables are columnar (one array per named field); codes are described by D.codes.
  var S = D.strings, P = D.processes, SP = D.spans, FE = D.failed_execs;
  var FE_COLOR = { failed: "#b00020", miss: "#9a9a9a" };  // by D.codes.failed_exec name
  var N = P.pid.length;
  var ROW_H = 18, AXIS_H = 22, INDENT = 12, MAX_INDENT_LEVELS = 24, TRI_W = 12;
  var OUTCOME = D.codes.outcome;  // outcome code -> {name, label, failed}
  var COLOR = { ok: "#3f9a3a", nonzero: "#e07b00", signaled: "#c62835", running: "#3b7dd8",
                unknown: "#8a8a8a" };
  var COLORS = OUTCOME.map(function (o) { return COLOR[o.name]; });

  // ---- derived structure (rows are in tree order: a parent comes before its subtree)
  var parent = Int32Array.from(P.parent);
  var depth = new Int32Array(N), subEnd = new Int32Array(N);
  var i, k;
  for (i = 0; i < N; i++) {
    depth[i] = parent[i] < 0 ? 0 : depth[parent[i]] + 1;
    subEnd[i] = i + 1;
  }
  for (i = N - 1; i >= 0; i--) {
    var pa = parent[i];
    if (pa >= 0 && subEnd[i] > subEnd[pa]) subEnd[pa] = subEnd[i];
  }
  var span0 = P.span0, spStart = SP.start, spEnd = SP.end;
  // Runs of short-lived siblings, most of them identical (`./configure`'s hundreds of
  // forks, with their subtrees): folded into the run's first row ("configure (fork)
  // × 312 (+ 40 others), 0.9 s total", every member's bars drawn in it) until clicked.
  // that many identical ones, each shorter than 1 s or 1 % of the recording
  var FOLD_MIN = 4, FOLD_SHORT = Math.max(1e9, D.end / 100);
  var runLen = new Int32Array(N), runEnd = new Int32Array(N), runTotal = new Float64Array(N);
  var runName = new Array(N), runOpen = new Uint8Array(N);
  var runOf = new Int32Array(N).fill(-1);  // row -> the first row of the innermost run
  (function () {
    function short(r) { return P.end[r] - P.start[r] < FOLD_SHORT; }
    function group(first, end) {  // the children first, subEnd[first], ... before end
      var seg = [];
      for (var c = first; c <= end; c = c < end ? subEnd[c] : end + 1) {
        if (c < end && short(c)) { seg.push(c); continue; }
        if (seg.length >= FOLD_MIN) fold(seg);
        seg = [];
      }
    }
    function fold(seg) {
      var count = {}, best = -1;
      for (var j = 0; j < seg.length; j++) {
        var k = P.cmd[seg[j]];
        count[k] = (count[k] || 0) + 1;
        if (best < 0 || count[k] > count[best]) best = k;
      }
      if (count[best] < FOLD_MIN) return;
      var h = seg[0], last = seg[seg.length - 1];
      runLen[h] = seg.length;
      runEnd[h] = subEnd[last];
      var others = seg.length - count[best];
      runName[h] = S[best] + " × " + count[best] + (others ? " (+ " + others + " other" +
                   (others === 1 ? "" : "s") + ")" : "");
      for (j = 0; j < seg.length; j++) runTotal[h] += P.end[seg[j]] - P.start[seg[j]];
      for (var m = h; m < runEnd[h]; m++) runOf[m] = h;
    }
    group(0, N);  // the roots
    for (var p = 0; p < N; p++) if (subEnd[p] > p + 1) group(p + 1, subEnd[p]);
  })();
  function folded(r) { return runLen[r] > 0 && !runOpen[r] && keep === null; }
  var feStart = new Int32Array(N + 1);  // failed execs of row i: FE[feStart[i] .. feStart[i+1])
  (function () {
    var counts = new Int32Array(N + 1);
    for (var j = 0; j < FE.row.length; j++) counts[FE.row[j] + 1]++;
    for (var r = 0; r < N; r++) feStart[r + 1] = feStart[r] + counts[r + 1];
  })();
  var END = Math.max(D.end, 1);

  // ---- state
  var collapsed = new Uint8Array(N);
  var keep = null;                 // null: no filter; else 1 = match, 2 = ancestor kept for context
  var visible = new Int32Array(0);
  var rowPos = new Int32Array(N);  // row index -> position in `visible`, -1 if hidden
  var vs = 0, ve = END;            // time window (ns from the recording's start)
  var selected = -1, hoverRow = -1, flashUntil = 0;
  var hay = null;                  // lowercased search text per row, built on first filter

  // ---- elements
  var $ = function (id) { return document.getElementById(id); };
  var wrap = $("tl-wrap"), cv = $("tl"), spacer = $("tl-spacer"), conc = $("conc"), tip = $("tip");
  var ctx = cv.getContext("2d"), cctx = conc.getContext("2d");

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function fmtDur(ns) {
    var a = Math.abs(ns);
    if (a >= 60e9) {
      var m = Math.floor(a / 60e9);
      return (ns < 0 ? "-" : "") + m + " min " + ((a - m * 60e9) / 1e9).toFixed(1) + " s";
    }
    if (a >= 1e9) return (ns / 1e9).toFixed(3) + " s";
    if (a >= 1e6) return (ns / 1e6).toFixed(3) + " ms";
    if (a >= 1e3) return (ns / 1e3).toFixed(1) + " µs";
    return ns + " ns";
  }
  function fmtAt(ns) { return "+" + fmtDur(ns); }
  function str(idx) { return idx < 0 ? "" : S[idx]; }
  function cmd(r) { return S[P.cmd[r]]; }
  function dash(v) { return v === null || v === undefined ? "–" : String(v); }

  // ---- summary
  (function () {
    var sm = D.summary, dl = $("summary");
    var items = [
      ["Command", sm.command], ["Started", sm.start_time || "–"],
      ["Duration", fmtDur(sm.duration)], ["Processes", sm.processes], ["Execs", sm.execs],
      ["Failed", sm.failed], ["Killed by signals", sm.signaled],
      ["Still running at the end", sm.running], ["Lost events", sm.lost],
      ["Peak concurrency", sm.peak + (sm.peak ? " at " + fmtAt(sm.peak_at) : "")],
      ["Backend", sm.backend || "–"], ["Host", sm.host || "–"],
    ];
    if (sm.kernel) items.push(["Kernel", sm.kernel]);
    if (sm.end_reason) items.push(["Recording ended", sm.end_reason]);
    if (D.fds) items.push(["Leaked descriptors", D.fds.nleaks]);
    for (var j = 0; j < items.length; j++) {
      var d = el("div", null, "kv");
      d.appendChild(el("dt", items[j][0]));
      var dd = el("dd", items[j][0] === "Leaked descriptors" ? null : items[j][1]);
      if (items[j][0] === "Leaked descriptors") {
        var fa = el("a", items[j][1]);
        fa.href = "#fds-sec";
        dd.appendChild(fa);
      }
      if ((items[j][0] === "Failed" || items[j][0] === "Killed by signals" ||
           items[j][0] === "Lost events" || items[j][0] === "Leaked descriptors") &&
          Number(items[j][1]) > 0) dd.className = "bad";
      d.appendChild(dd);
      dl.appendChild(d);
    }
    $("cmd").textContent = sm.command;
    var lg = $("legend");
    for (var o = 0; o < OUTCOME.length; o++) {
      var s = el("span", OUTCOME[o].label, "lg");
      var sw = el("i");
      sw.style.background = COLORS[o];
      s.insertBefore(sw, s.firstChild);
      lg.appendChild(s);
    }
    // every other mark the timeline draws
    var marks = D.codes.failed_exec.map(function (c) {
      return ["▲", FE_COLOR[c.name], c.label];
    }).concat([["▮", "#999", "an earlier image (before its last exec), paler"],
               ["◂ ▸", "#999", "the process is outside the time window"],
               ["▸ [+N]", "#666", "collapsed subtree (click ▸)"],
               ["× N", "#666", "a run of N short-lived identical siblings (+ others), folded: click the row"]]);
    for (var q = 0; q < marks.length; q++) {
      var ms = el("span", marks[q][2], "lg");
      var mk = el("b", marks[q][0], "lg-mark");
      mk.style.color = marks[q][1];
      ms.insertBefore(mk, ms.firstChild);
      lg.appendChild(ms);
    }
  })();

  // ---- visible rows
  function rebuild() {
    var out = new Int32Array(N), n = 0, r = 0;
    rowPos.fill(-1);
    while (r < N) {
      if (keep !== null && keep[r] === 0) { r++; continue; }
      rowPos[r] = n;
      out[n++] = r;
      if (folded(r)) {  // the run's other rows are shown in its first
        for (var m = r + 1; m < runEnd[r]; m++) rowPos[m] = n - 1;
        r = runEnd[r];
        continue;
      }
      r = collapsed[r] ? subEnd[r] : r + 1;
    }
    visible = out.subarray(0, n);
    layout();
  }

  function applyFilter(text) {
    var q = text.trim().toLowerCase();
    var info = $("filter-count");
    if (!q) { keep = null; info.textContent = ""; rebuild(); return; }
    if (hay === null) {
      hay = new Array(N);
      for (var r = 0; r < N; r++) {
        var parts = [cmd(r)];
        for (var s = span0[r]; s < span0[r + 1]; s++) {
          parts.push(S[SP.label[s]]);
          if (SP.argv[s] >= 0) parts.push(S[SP.argv[s]]);
        }
        hay[r] = parts.join("\n").toLowerCase();
      }
    }
    keep = new Uint8Array(N);
    var matches = 0;
    for (var j = 0; j < N; j++) {
      if (hay[j].indexOf(q) >= 0 || String(P.pid[j]) === q) {
        matches++;
        keep[j] = 1;
        for (var a = parent[j]; a >= 0 && keep[a] === 0; a = parent[a]) keep[a] = 2;
      }
    }
    info.textContent = matches + " matching process" + (matches === 1 ? "" : "es");
    rebuild();
  }

  // ---- geometry
  var W = 0, H = 0, labelW = 0, CW = 0, CH = 0;
  function layout() {
    var dpr = window.devicePixelRatio || 1;
    W = wrap.clientWidth;
    H = wrap.clientHeight;
    labelW = Math.round(Math.max(160, Math.min(420, W * 0.3)));
    cv.style.width = W + "px";
    cv.style.height = H + "px";
    cv.width = Math.round(W * dpr);
    cv.height = Math.round(H * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    spacer.style.height = Math.max(0, AXIS_H + visible.length * ROW_H - H) + "px";
    CW = conc.parentNode.clientWidth;
    CH = 90;
    conc.style.width = CW + "px";
    conc.style.height = CH + "px";
    conc.width = Math.round(CW * dpr);
    conc.height = Math.round(CH * dpr);
    cctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    schedule();
  }
  function X(t) { return labelW + (t - vs) * (W - labelW) / (ve - vs); }
  function T(x) { return vs + (x - labelW) * (ve - vs) / (W - labelW); }
  function rowTop(pos) { return AXIS_H + pos * ROW_H - wrap.scrollTop; }

  var pending = false;
  function schedule() {
    if (!pending) { pending = true; requestAnimationFrame(function () { pending = false; draw(); }); }
  }

  function niceStep(span, target) {
    var raw = span / Math.max(1, target), p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }

  function fmtTick(t, step) {
    var div = step >= 1e8 ? 1e9 : step >= 1e5 ? 1e6 : step >= 100 ? 1e3 : 1;
    var unit = div === 1e9 ? " s" : div === 1e6 ? " ms" : div === 1e3 ? " µs" : " ns";
    var dec = Math.max(0, Math.ceil(-Math.log10(step / div) - 1e-9));
    return "+" + (t / div).toFixed(dec) + unit;
  }

  function drawAxis(c, top, h, x0, x1, labels) {
    var step = niceStep(ve - vs, (x1 - x0) / 110);
    c.fillStyle = "#555";
    c.strokeStyle = "#e4e4e4";
    c.font = "11px sans-serif";
    c.textBaseline = "middle";
    for (var t = Math.ceil(vs / step) * step; t <= ve; t += step) {
      var x = Math.round(X(t)) + 0.5;
      c.beginPath();
      c.moveTo(x, top);
      c.lineTo(x, top + h);
      c.stroke();
      if (labels) c.fillText(fmtTick(t, step), x + 3, top + 10);
    }
  }

  function draw() {
    ctx.clearRect(0, 0, W, H);
    var st = wrap.scrollTop;
    var first = Math.max(0, Math.floor((st) / ROW_H));
    var last = Math.min(visible.length, Math.ceil((st + H - AXIS_H) / ROW_H) + 1);
    var now = performance.now();
    drawAxis(ctx, AXIS_H, H - AXIS_H, labelW, W, false);
    ctx.font = "12px sans-serif";
    ctx.textBaseline = "middle";
    for (var pos = first; pos < last; pos++) {
      var r = visible[pos], y = rowTop(pos);
      var ctxRow = keep !== null && keep[r] === 2;
      if (r === selected) {
        ctx.fillStyle = now < flashUntil ? "#ffe26b" : "#fff4b8";
        ctx.fillRect(0, y, W, ROW_H);
      } else if (r === hoverRow) {
        ctx.fillStyle = "#eef3fb";
        ctx.fillRect(0, y, W, ROW_H);
      } else if (pos % 2) {
        ctx.fillStyle = "#fafafa";
        ctx.fillRect(0, y, W, ROW_H);
      }
      // label
      var lv = Math.min(depth[r], MAX_INDENT_LEVELS), x = 4 + lv * INDENT;
      ctx.save();
      ctx.beginPath();
      ctx.rect(0, y, labelW - 4, ROW_H);
      ctx.clip();
      if (subEnd[r] > r + 1 && !folded(r)) {
        ctx.fillStyle = "#666";
        ctx.fillText(collapsed[r] ? "▸" : "▾", x, y + ROW_H / 2);
      }
      x += TRI_W;
      ctx.fillStyle = ctxRow ? "#999" : "#222";
      ctx.font = ctxRow ? "italic 12px sans-serif" : "12px sans-serif";
      var lab = cmd(r);
      if (depth[r] > MAX_INDENT_LEVELS) lab = "(depth " + depth[r] + ") " + lab;
      if (collapsed[r]) lab += "  [+" + (subEnd[r] - r - 1) + "]";
      var fold = folded(r);
      if (fold) lab = runName[r] + ", " + fmtDur(runTotal[r]) + " total";
      else if (runLen[r] > 0) lab += "  (first of " + runLen[r] + ": click to fold)";
      ctx.fillText(lab.length > 200 ? lab.slice(0, 200) + "…" : lab, x, y + ROW_H / 2);
      ctx.restore();
      // bars
      ctx.save();
      ctx.beginPath();
      ctx.rect(labelW, y, W - labelW, ROW_H);
      ctx.clip();
      if (!fold) drawBars(r, y, ctxRow);
      else for (var mr = r; mr < runEnd[r]; mr = subEnd[mr]) drawBars(mr, y, ctxRow);
      ctx.restore();
    }
    drawTop();
  }

  // the bars and failed-exec marks of row r, at y
  function drawBars(r, y, ctxRow) {
    {
      ctx.globalAlpha = ctxRow ? 0.3 : 1;
      var col = COLORS[P.outcome[r]], s0 = span0[r], s1 = span0[r + 1];
      for (var s = s0; s < s1; s++) {
        var xa = X(spStart[s]), xb = X(spEnd[s]);
        if (xb < labelW || xa > W) continue;
        xa = Math.max(xa, labelW - 1);
        xb = Math.min(xb, W + 1);
        var w = Math.max(1, xb - xa);
        ctx.fillStyle = col;
        ctx.globalAlpha = (ctxRow ? 0.3 : 1) * (s < s1 - 1 ? 0.55 : 1);
        ctx.fillRect(xa, y + 3, w, ROW_H - 6);
        if (w > 40) {
          ctx.fillStyle = "#fff";
          var chars = Math.floor((w - 6) / 6.5), t = S[SP.label[s]];
          if (chars > 2) {
            ctx.fillText(t.length > chars ? t.slice(0, chars - 1) + "…" : t,
                         Math.max(xa, labelW) + 3, y + ROW_H / 2);
          }
        }
      }
      ctx.globalAlpha = 1;
      if (spEnd[s1 - 1] < vs || spStart[s0] > ve) {  // the process is outside the window
        ctx.fillStyle = "#999";
        ctx.fillText(spEnd[s1 - 1] < vs ? "◂" : "▸", spEnd[s1 - 1] < vs ? labelW + 3 : W - 12,
                     y + ROW_H / 2);
      }
      for (var f = feStart[r]; f < feStart[r + 1]; f++) {
        var fx = X(FE.time[f]);
        ctx.fillStyle = FE_COLOR[D.codes.failed_exec[FE.kind[f]].name];
        ctx.beginPath();
        ctx.moveTo(fx, y + 2);
        ctx.lineTo(fx - 3, y + ROW_H - 2);
        ctx.lineTo(fx + 3, y + ROW_H - 2);
        ctx.fill();
      }
    }
  }

  function drawTop() {
    var now = performance.now();
    // axis band on top
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, AXIS_H);
    ctx.strokeStyle = "#ccc";
    ctx.beginPath();
    ctx.moveTo(0, AXIS_H - 0.5);
    ctx.lineTo(W, AXIS_H - 0.5);
    ctx.moveTo(labelW - 0.5, 0);
    ctx.lineTo(labelW - 0.5, H);
    ctx.stroke();
    drawAxis(ctx, 0, AXIS_H, labelW, W, true);
    ctx.fillStyle = "#333";
    ctx.font = "bold 12px sans-serif";
    ctx.fillText(visible.length + " of " + N + " processes", 6, AXIS_H / 2);
    drawConc();
    if (now < flashUntil) schedule();
  }

  // ---- concurrency chart (same time axis as the timeline)
  var cT = D.concurrency.time, cN = D.concurrency.alive, peak = D.summary.peak;
  var brush = null;
  function drawConc() {
    var c = cctx;
    c.clearRect(0, 0, CW, CH);
    var top = 16, h = CH - top - 2, x0 = labelW, x1 = CW;
    c.fillStyle = "#333";
    c.font = "12px sans-serif";
    c.textBaseline = "middle";
    c.fillText("Processes alive (peak " + peak + ")", 6, top + h / 2);
    c.fillStyle = "#777";
    c.font = "10px sans-serif";
    c.fillText(String(peak), x0 - 24, top + 4);
    c.fillText("0", x0 - 12, top + h - 4);
    drawAxis(c, top, h, x0, x1, false);
    if (!cT.length || peak <= 0) return;
    var cols = Math.max(1, Math.ceil(x1 - x0)), mx = new Float64Array(cols);
    var lo = 0, hi = cT.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (cT[mid] <= vs) lo = mid + 1; else hi = mid; }
    for (var j = Math.max(0, lo - 1); j < cT.length && cT[j] <= ve; j++) {
      var a = Math.floor(X(cT[j]) - x0), b = j + 1 < cT.length ? X(cT[j + 1]) - x0 : cols;
      a = Math.max(0, a);
      var bb = Math.min(cols, Math.max(a + 1, Math.ceil(b)));
      for (var q = a; q < bb; q++) if (cN[j] > mx[q]) mx[q] = cN[j];
    }
    c.fillStyle = "#5b7fb5";
    for (var px = 0; px < cols; px++) {
      if (mx[px] > 0) {
        var bh = h * mx[px] / peak;
        c.fillRect(x0 + px, top + h - bh, 1, bh);
      }
    }
    if (brush) {
      c.fillStyle = "rgba(255,200,0,0.3)";
      c.fillRect(Math.min(brush[0], brush[1]), top, Math.abs(brush[1] - brush[0]), h);
    }
  }
  function concAt(t) {
    var lo = 0, hi = cT.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (cT[mid] <= t) lo = mid + 1; else hi = mid; }
    return lo > 0 ? cN[lo - 1] : 0;
  }

  // ---- zoom and pan
  function setView(a, b) {
    var minW = 1000;
    if (b - a < minW) { var c = (a + b) / 2; a = c - minW / 2; b = c + minW / 2; }
    var pad = (END) * 0.05;
    if (b - a > END + 2 * pad) { a = -pad; b = END + pad; }
    if (a < -pad) { b += -pad - a; a = -pad; }
    if (b > END + pad) { a -= b - END - pad; b = END + pad; }
    vs = a;
    ve = b;
    schedule();
  }
  function zoomAt(t, factor) { setView(t - (t - vs) * factor, t + (ve - t) * factor); }
  function fit() { vs = 0; ve = END; schedule(); }

  // ---- tooltip and details
  function procLines(r) {
    return [
      "pid " + P.pid[r] + " · ppid " + dash(P.ppid[r]) + " · pgid " + dash(P.pgid[r]) +
        " · sid " + dash(P.sid[r]),
      "start " + fmtAt(P.start[r]) + " · duration " + fmtDur(P.end[r] - P.start[r]) +
        (P.forked[r] ? "" : " (already running when the recording started)"),
      "exit: " + S[P.status[r]],
    ];
  }
  function spanArgv(s) {
    return SP.argv[s] >= 0 ? S[SP.argv[s]] : "(no exec yet: image inherited from the parent: " +
      S[SP.label[s]] + ")";
  }
  function showTip(r, s, ev) {
    tip.textContent = "";
    tip.appendChild(el("div", cmd(r), "tt-title"));
    var n = span0[r + 1] - span0[r];
    var argv = spanArgv(s);
    if (argv.length > 2000) argv = argv.slice(0, 2000) + "… (" + (argv.length - 2000) +
      " more characters: click for the full argv)";
    tip.appendChild(el("div", "argv: " + argv, "tt-argv"));
    var lines = procLines(r);
    if (n > 1) {
      lines.push("image " + (s - span0[r] + 1) + " of " + n + ": " + fmtAt(spStart[s]) + " for " +
                 fmtDur(spEnd[s] - spStart[s]));
    }
    var nf = feStart[r + 1] - feStart[r];
    if (nf) lines.push(nf + " failed exec" + (nf > 1 ? "s" : ""));
    for (var j = 0; j < lines.length; j++) tip.appendChild(el("div", lines[j]));
    tip.hidden = false;
    var tw = tip.offsetWidth, th = tip.offsetHeight;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + tw > window.innerWidth - 4) x = Math.max(4, ev.clientX - tw - 14);
    if (y + th > window.innerHeight - 4) y = Math.max(4, ev.clientY - th - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hideTip() { tip.hidden = true; }

  function showDetails(r) {
    var box = $("details");
    box.textContent = "";
    box.hidden = false;
    box.appendChild(el("h3", "pid " + P.pid[r] + ": " + cmd(r)));
    var lines = procLines(r);
    for (var j = 0; j < lines.length; j++) box.appendChild(el("div", lines[j]));
    if (parent[r] >= 0) {
      var pd = el("div", "parent: ");
      pd.appendChild(link(parent[r], "pid " + P.pid[parent[r]] + " " + cmd(parent[r])));
      box.appendChild(pd);
    }
    for (var s = span0[r]; s < span0[r + 1]; s++) {
      box.appendChild(el("h4", "image " + (s - span0[r] + 1) + ": " + fmtAt(spStart[s]) + " for " +
                         fmtDur(spEnd[s] - spStart[s]) +
                         (SP.file[s] >= 0 ? "   file " + S[SP.file[s]] : "")));
      box.appendChild(el("pre", spanArgv(s)));
    }
    for (var f = feStart[r]; f < feStart[r + 1]; f++) {
      var miss = D.codes.failed_exec[FE.kind[f]].name === "miss";
      box.appendChild(el("div", (miss ? "PATH miss" : "failed exec") + " at " +
                         fmtAt(FE.time[f]) + ": " + S[FE.file[f]] + " (" + S[FE.error[f]] + ")",
                         miss ? "note" : "bad"));
    }
  }

  function hit(ev) {
    var rect = cv.getBoundingClientRect();
    var x = ev.clientX - rect.left, y = ev.clientY - rect.top;
    if (y < AXIS_H || x < 0 || x > W) return null;
    var pos = Math.floor((y - AXIS_H + wrap.scrollTop) / ROW_H);
    if (pos < 0 || pos >= visible.length) return null;
    var r = visible[pos], res = { r: r, x: x, y: y, s: -1, label: x < labelW };
    if (!res.label) {
      // the span under the pointer, else the nearest one within 3 px
      var tol = 3 * (ve - vs) / (W - labelW), t = T(x), best = tol;
      for (var s = span0[r]; s < span0[r + 1]; s++) {
        var dist = t < spStart[s] ? spStart[s] - t : t > spEnd[s] ? t - spEnd[s] : -1;
        if (dist < 0) { res.s = s; break; }
        if (dist <= best) { best = dist; res.s = s; }
      }
    }
    return res;
  }

  var drag = null;
  cv.addEventListener("mousedown", function (ev) {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, vs: vs, ve: ve, st: wrap.scrollTop, moved: false };
    ev.preventDefault();
  });
  window.addEventListener("mousemove", function (ev) {
    if (drag) {
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (drag.moved) {
        var dt = -dx * (drag.ve - drag.vs) / (W - labelW);
        setView(drag.vs + dt, drag.ve + dt);
        wrap.scrollTop = drag.st - dy;
        hideTip();
        return;
      }
    }
    if (ev.target !== cv) { mouse = null; return; }
    mouse = { clientX: ev.clientX, clientY: ev.clientY };
    hoverAt(mouse);
  });
  var mouse = null;  // last pointer position over the timeline
  function hoverAt(ev) {
    var h = hit(ev);
    var nr = h ? h.r : -1;
    if (nr !== hoverRow) { hoverRow = nr; schedule(); }
    if (!h) { hideTip(); return; }
    if (h.label) showTip(h.r, span0[h.r + 1] - 1, ev);
    else if (h.s >= 0) showTip(h.r, h.s, ev);
    else hideTip();
  }
  window.addEventListener("mouseup", function (ev) {
    if (!drag) return;
    var d = drag;
    drag = null;
    if (d.moved || ev.target !== cv) return;
    var h = hit(ev);
    if (!h) return;
    var x = 4 + Math.min(depth[h.r], MAX_INDENT_LEVELS) * INDENT;
    if (h.label && subEnd[h.r] > h.r + 1 && !folded(h.r) && h.x >= x - 3 &&
        h.x < x + TRI_W + 2) {
      toggle(h.r);
    } else if (h.label && runLen[h.r] > 0) {  // a run's first row: fold or unfold it
      runOpen[h.r] = runOpen[h.r] ? 0 : 1;
      selected = h.r;
      showDetails(h.r);
      rebuild();
    } else {
      selected = h.r;
      showDetails(h.r);
      schedule();
    }
  });
  cv.addEventListener("mouseleave", function () {
    mouse = null;
    hideTip();
    hoverRow = -1;
    schedule();
  });
  cv.addEventListener("dblclick", function (ev) {
    var h = hit(ev);
    if (h && !h.label) fit();
  });
  function onWheel(ev) {
    var rect = cv.getBoundingClientRect(), x = ev.clientX - rect.left;
    if (ev.ctrlKey || ev.altKey || ev.metaKey) {
      ev.preventDefault();
      zoomAt(x >= labelW ? T(x) : (vs + ve) / 2, Math.pow(1.0015, ev.deltaY));
    } else if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      ev.preventDefault();
      var d = ev.shiftKey && !ev.deltaX ? ev.deltaY : ev.deltaX;
      var dt = d * (ve - vs) / (W - labelW);
      setView(vs + dt, ve + dt);
    }
  }
  cv.addEventListener("wheel", onWheel, { passive: false });
  wrap.addEventListener("scroll", function () {
    // the row under a still pointer changed: update the tooltip
    if (mouse && !drag) hoverAt(mouse); else hideTip();
    schedule();
  });

  conc.addEventListener("mousedown", function (ev) {
    var x = ev.clientX - conc.getBoundingClientRect().left;
    if (x < labelW) return;
    brush = [x, x];
    ev.preventDefault();
  });
  conc.addEventListener("mousemove", function (ev) {
    var x = ev.clientX - conc.getBoundingClientRect().left;
    if (brush) { brush[1] = Math.max(labelW, Math.min(CW, x)); schedule(); return; }
    if (x < labelW) { conc.title = ""; return; }
    var t = T(x);
    conc.title = concAt(t) + " alive at " + fmtAt(t) + " (drag to zoom)";
  });
  window.addEventListener("mouseup", function () {
    if (!brush) return;
    var a = Math.min(brush[0], brush[1]), b = Math.max(brush[0], brush[1]);
    brush = null;
    if (b - a > 3) setView(T(a), T(b));
    else schedule();
  });
  conc.addEventListener("wheel", onWheel, { passive: false });

  // ---- collapse, reveal
  function toggle(r) {
    if (subEnd[r] <= r + 1) return;
    collapsed[r] = collapsed[r] ? 0 : 1;
    rebuild();
  }
  function reveal(r, center) {
    if (keep !== null && keep[r] === 0) {
      $("filter").value = "";
      applyFilter("");
    }
    var changed = false;
    for (var a = parent[r]; a >= 0; a = parent[a]) if (collapsed[a]) { collapsed[a] = 0; changed = true; }
    for (var ra = r; ra >= 0; ra = parent[ra]) {  // every run that holds r or an ancestor
      if (runOf[ra] >= 0 && !runOpen[runOf[ra]]) { runOpen[runOf[ra]] = 1; changed = true; }
    }
    if (changed) rebuild();
    var pos = rowPos[r];
    var top = AXIS_H + pos * ROW_H;
    if (center || top < wrap.scrollTop + AXIS_H || top + ROW_H > wrap.scrollTop + H) {
      wrap.scrollTop = Math.max(0, top - (H + AXIS_H) / 2);
    }
    var s = P.start[r], e = P.end[r];
    if (e < vs || s > ve || (e - s) < (ve - vs) / 200) {
      var w = Math.max(e - s, 1000) * 1.5 + (ve - vs) * 0.02;
      if (center) w = Math.max(e - s, 1000) * 1.3;
      setView(s - (w - (e - s)) / 2, e + (w - (e - s)) / 2);
    }
    schedule();
  }
  function goTo(r) {
    $("tl-sec").scrollIntoView({ block: "start" });
    reveal(r, true);
    selected = r;
    flashUntil = performance.now() + 1200;
    showDetails(r);
    schedule();
  }
  function link(r, text) {
    var a = el("a", text);
    a.href = "#tl-sec";
    a.addEventListener("click", function (ev) { ev.preventDefault(); goTo(r); });
    return a;
  }

  // ---- tables
  function fillTable(id, rows, note) {
    var tb = $(id).querySelector("tbody");
    for (var j = 0; j < rows.length; j++) {
      var r = rows[j], tr = el("tr");
      tr.appendChild(el("td", P.pid[r], "num"));
      var td = el("td");
      td.appendChild(link(r, cmd(r)));
      tr.appendChild(td);
      tr.appendChild(el("td", fmtAt(P.start[r]), "num"));
      tr.appendChild(el("td", fmtDur(P.end[r] - P.start[r]), "num"));
      var stt = el("td", S[P.status[r]]);
      stt.style.color = COLORS[P.outcome[r]];
      tr.appendChild(stt);
      tb.appendChild(tr);
    }
    if (!rows.length) {
      var er = el("tr"), ec = el("td", "none");
      ec.colSpan = 5;
      er.appendChild(ec);
      tb.appendChild(er);
    }
    if (note) $(id + "-note").textContent = note;
  }
  (function () {
    var idx = new Int32Array(N);
    for (var j = 0; j < N; j++) idx[j] = j;
    var dur = function (r) { return P.end[r] - P.start[r]; };
    var slow = Array.from(idx).sort(function (a, b) { return dur(b) - dur(a) || a - b; });
    var SLOW = 25;
    fillTable("slowest", slow.slice(0, SLOW), N > SLOW ? "the " + SLOW + " longest of " + N : "");
    var failed = [];
    for (var r = 0; r < N; r++) if (OUTCOME[P.outcome[r]].failed) failed.push(r);
    var FMAX = 500;
    fillTable("failed", failed.slice(0, FMAX),
              failed.length > FMAX ? "the first " + FMAX + " of " + failed.length +
              " (filter the timeline to see more)" : "");
  })();

  // ---- tests (proctrace_bcc.attribution): one row per test, links to its rows
  function onlyTest(i) {  // the timeline keeps test i's processes (and their ancestors)
    var RT = D.tests.row_test;
    keep = new Uint8Array(N);
    var n = 0;
    for (var r = 0; r < N; r++) {
      if (RT[r] !== i) continue;
      n++;
      keep[r] = 1;
      for (var a = parent[r]; a >= 0 && keep[a] === 0; a = parent[a]) keep[a] = 2;
    }
    $("filter").value = "";
    $("filter-count").textContent = "test " + (i + 1) + ": " + plural(n, "process", "processes");
    rebuild();
    $("tl-sec").scrollIntoView({ block: "start" });
  }
  (function () {
    if (!D.tests || !$("tests-sec")) return;
    var T = D.tests.tests, tb = $("tests").querySelector("tbody");
    $("tests-note").textContent = T.name.length + " in run order";
    T.name.forEach(function (nm, i) {
      var tr = el("tr");
      tr.id = "test-" + (i + 1);
      tr.appendChild(el("td", i + 1, "num"));
      var td = el("td");
      td.appendChild(T.first[i] >= 0 ? link(T.first[i], S[nm]) : el("span", S[nm]));
      tr.appendChild(td);
      tr.appendChild(el("td", (T.file[i] >= 0 ? S[T.file[i]] : "") +
                        (T.number[i] === null ? "" : ", test " + T.number[i])));
      tr.appendChild(el("td", fmtAt(T.start[i]), "num"));
      tr.appendChild(el("td", fmtDur(T.duration[i]), "num"));
      tr.appendChild(el("td", T.procs[i], "num"));
      tr.appendChild(el("td", T.failed[i], "num"));
      tr.appendChild(el("td", T.left[i], "num"));
      var oc = S[T.outcome[i]], ot = el("td", oc);
      if (oc === "failed") ot.style.color = COLOR.nonzero;
      tr.appendChild(ot);
      var bt = el("button", "only this test");
      bt.addEventListener("click", function () { onlyTest(i); });
      var tc = el("td");
      tc.appendChild(bt);
      tr.appendChild(tc);
      tb.appendChild(tr);
    });
  })();

  // ---- descriptors (record --fds): the leaks in words, then every pipe and socket
  function appendSegs(parent, segs) {  // S[i]: plain text; {text, row}: a link to that row
    for (var j = 0; j < segs.length; j++) {
      var g = segs[j];
      if (typeof g === "number") parent.appendChild(document.createTextNode(S[g]));
      else parent.appendChild(link(g.row, S[g.text]));
    }
  }
  function fdList(fds) { return (fds.length === 1 ? "fd " : "fds ") + fds.join(", "); }
  function plural(n, w, ws) { return n + " " + (n === 1 ? w : (ws || w + "s")); }
  function words(tmpl, t) { return tmpl.replace("{t}", t === null ? "" : fmtAt(t)); }
  (function () {
    var F = D.fds;
    if (!F || !$("fds-sec")) return;
    var FC = F.codes, CH = F.channels, HO = F.holders;
    $("fds-summary").textContent = plural(F.pipes, "pipe") + " and " + plural(F.sockets, "socket") +
      " seen in " + plural(F.observed, "process", "processes") + "; " + F.open_at_end +
      " still open when the recording ended.";
    var box = $("fds-leaks");
    if (!F.nleaks) {
      box.appendChild(el("p", "None: " + S[F.none] + "."));
    } else {
      $("fds-leaks-note").textContent = F.nleaks > F.leaks.length ? "the first " +
        F.leaks.length + " of " + F.nleaks + " (analyze -d fds lists them all)" : String(F.nleaks);
    }
    for (var j = 0; j < F.leaks.length; j++) {
      var lk = F.leaks[j], div = el("div", null, "leak");
      for (var l = 0; l < lk.lines.length; l++) {
        var line = el(l === 0 ? "p" : "div", null, l === 0 ? "leak-head" : "leak-more");
        appendSegs(line, lk.lines[l]);
        div.appendChild(line);
      }
      var chain = el("div", "chain: ", "chain");
      for (var c = 0; c < lk.chain.length; c++) {
        var it = lk.chain[c];
        if (c) chain.appendChild(el("span", " \u2192 ", "arrow"));
        chain.appendChild(it.row >= 0 ? link(it.row, S[it.name]) : el("span", S[it.name]));
        if (it.fds.length) chain.appendChild(el("span", " (" + fdList(it.fds) + ")", "fds"));
      }
      div.appendChild(chain);
      box.appendChild(div);
    }
    if (F.hang) {  // the hang snapshot: who waits on whom, indented by depth
      var hb = el("div", null, "hang");
      hb.appendChild(el("h3", S[F.hang.head]));
      for (var q = 0; q < F.hang.lines.length; q++) {
        var hl = el("div", null, "hang-line");
        hl.style.marginLeft = (2 * F.hang.lines[q].depth) + "em";
        appendSegs(hl, F.hang.lines[q].segs);
        hb.appendChild(hl);
      }
      box.parentNode.insertBefore(hb, box.nextSibling);
    }
    var total = F.pipes + F.sockets, tbl = $("fds-chan"), shown = CH.name.length;
    $("fds-chan-note").textContent = (shown < total ? "the first " + shown + " of " : "") +
      total + ": leaked ones first, then the ones still open at the end";
    for (var k = 0; k < shown; k++) {
      var tb = el("tbody"), hr = el("tr", null, "ch-head"), hd = el("td");
      hd.colSpan = 7;
      hd.appendChild(el("span", CH.name[k], "ch-name"));
      hd.appendChild(el("span", FC.kind[CH.kind[k]], "ch-kind"));
      appendSegs(hd, CH.opener[k]);
      if (CH.open_at_end[k]) {
        hd.appendChild(el("span", "  open at the end in " +
                          plural(CH.open_at_end[k], "process", "processes"), "note"));
      }
      hr.appendChild(hd);
      tb.appendChild(hr);
      for (var h = CH.holder0[k]; h < CH.holder0[k + 1]; h++) {
        var r = HO.row[h], mark = FC.mark[HO.mark[h]], until = FC.until[HO.until_kind[h]];
        var tr = el("tr", null, mark ? "mark-" + mark : null);
        tr.appendChild(el("td", r >= 0 ? P.pid[r] : "?", "num"));
        var tdc = el("td");
        tdc.appendChild(r >= 0 ? link(r, S[HO.command[h]]) : el("span", S[HO.command[h]]));
        tr.appendChild(tdc);
        tr.appendChild(el("td", HO.fds[h].join(","), "num"));
        tr.appendChild(el("td", S[HO.end[h]]));
        tr.appendChild(el("td", words(FC.since[HO.since_kind[h]], HO.since[h]), "num"));
        tr.appendChild(el("td", words(until.text, HO.until[h]), "num"));
        var open = until.at_end;
        tr.appendChild(el("td", (open ? "\u25cf open" : "") + (mark ? (open ? " \u00b7 " : "") +
                                                               mark : ""),
                          open ? "at-end open" : "at-end"));
        tb.appendChild(tr);
      }
      if (CH.hidden[k]) {
        var mr = el("tr"), mc = el("td", "\u2026 and " + plural(CH.hidden[k], "more holder") +
                                   " (analyze -d fds lists them all)", "note");
        mc.colSpan = 7;
        mr.appendChild(mc);
        tb.appendChild(mr);
      }
      tbl.appendChild(tb);
    }
  })();

  // ---- controls
  var ft = null;
  $("filter").addEventListener("input", function () {
    clearTimeout(ft);
    var v = this.value;
    ft = setTimeout(function () { applyFilter(v); }, N > 5000 ? 200 : 60);
  });
  $("zoom-in").addEventListener("click", function () { zoomAt((vs + ve) / 2, 0.5); });
  $("zoom-out").addEventListener("click", function () { zoomAt((vs + ve) / 2, 2); });
  $("zoom-fit").addEventListener("click", fit);
  $("expand-all").addEventListener("click", function () {
    collapsed.fill(0);
    runOpen.fill(1);
    rebuild();
  });
  $("collapse-all").addEventListener("click", function () {
    runOpen.fill(0);
    for (var r = 0; r < N; r++) collapsed[r] = subEnd[r] > r + 1 ? 1 : 0;
    rebuild();
  });
  window.addEventListener("resize", layout);

  // a small recording gets a timeline just tall enough for all its rows
  var want = AXIS_H + N * ROW_H + 2;
  if (want < 0.7 * window.innerHeight) wrap.style.height = Math.max(120, want) + "px";
  rebuild();
  draw();
  var readyAt = performance.now(), loadMs = readyAt - t0;

  // ---- test hook: lets tests query state and find where to point the mouse
  function clientPoint(x, y) {
    var rect = cv.getBoundingClientRect();
    if (rect.top + y < 0 || rect.top + y >= window.innerHeight) {
      wrap.scrollIntoView({ block: "nearest" });
      rect = cv.getBoundingClientRect();
    }
    return { x: rect.left + x, y: rect.top + y };
  }
  window.__proctrace = {
    ready: true,
    loadMs: loadMs,     // running this script: parse the data, build rows, first draw
    readyAt: readyAt,   // from navigation start (includes reading and parsing the HTML)
    draw: draw,
    rows: function () { return N; },
    visibleRows: function () {
      return Array.from(visible, function (r) {
        return { index: r, pid: P.pid[r], command: cmd(r), depth: depth[r],
                 context: keep !== null && keep[r] === 2 };
      });
    },
    find: function (pid) {
      var out = [];
      for (var r = 0; r < N; r++) if (P.pid[r] === pid) out.push(r);
      return out;
    },
    barPoint: function (r, image) {
      reveal(r, false);
      draw();
      var s = span0[r + 1] - 1;
      if (image !== undefined) s = span0[r] + image;
      var a = Math.max(X(spStart[s]), labelW), b = Math.min(X(spEnd[s]), W);
      return clientPoint(b - a >= 1 ? (a + b) / 2 : a, rowTop(rowPos[r]) + ROW_H / 2);
    },
    togglePoint: function (r) {
      reveal(r, false);
      draw();
      return clientPoint(4 + Math.min(depth[r], MAX_INDENT_LEVELS) * INDENT + 4,
                         rowTop(rowPos[r]) + ROW_H / 2);
    },
    setFilter: function (q) { $("filter").value = q; applyFilter(q); },
    toggle: toggle,
    goTo: goTo,
    selected: function () { return selected; },
    rowY: function (r) {  // client y of row r's middle if it is drawn in the timeline, else null
      var pos = rowPos[r];
      if (pos < 0) return null;
      var y = rowTop(pos);
      if (y < AXIS_H || y + ROW_H > H) return null;
      return cv.getBoundingClientRect().top + y + ROW_H / 2;
    },
    tooltip: function () { return tip.hidden ? null : tip.textContent; },
    view: function () { return [vs, ve]; },
    setView: function (a, b) { setView(a, b); draw(); },
  };
  document.documentElement.setAttribute("data-ready", "1");
})();
