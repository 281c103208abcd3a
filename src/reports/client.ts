/**
 * The reports' own browser scripts, inlined into each page (src/reports/html.ts). Plain ES2020 for any recent browser.
 * Every value from the data reaches the page through `textContent`, `document.title` or a Chart.js label or tick:
 * never through `innerHTML` or an attribute that the browser would interpret.
 */

/** Read the data, build elements, format numbers and times, and the Chart.js defaults of every chart. */
export const CLIENT_HELPERS = `'use strict';
var REPORT = JSON.parse(document.getElementById('report-data').textContent);
var COLORS = { pass: '#2e7d32', fail: '#c62828', inconclusive: '#9ca3af', error: '#ef6c00', ref: '#6b8fd6', cur: '#f2994a', line: '#374151', threshold: '#c62828' };
Chart.defaults.animation = false;
Chart.defaults.responsive = true;
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.font.size = 11;

function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function add(parent) {
  for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
  return parent;
}
function cell(value) {
  if (value instanceof Node) return value;
  return document.createTextNode(value === null || value === undefined || value === '' ? '\\u2013' : String(value));
}
function facts(pairs) {
  var dl = el('dl', 'facts');
  pairs.forEach(function (p) {
    add(dl, add(el('div'), el('dt', null, p[0]), add(el('dd'), cell(p[1]))));
  });
  return dl;
}
function table(headers, rows) {
  var t = el('table');
  if (headers) {
    var head = el('tr');
    headers.forEach(function (h) { head.appendChild(el('th', null, h)); });
    add(t, add(el('thead'), head));
  }
  var body = el('tbody');
  rows.forEach(function (r) {
    var tr = el('tr');
    r.forEach(function (v) { add(tr, add(el('td'), cell(v))); });
    body.appendChild(tr);
  });
  return add(t, body);
}
function badge(text, kind) { return el('span', 'badge' + (kind ? ' ' + kind : ''), text); }
function num(x) {
  if (x === null || x === undefined) return '\\u2013';
  if (x !== 0 && Math.abs(x) < 1e-4) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}
function pct(x) { return (x * 100).toFixed(1) + '%'; }
function when(iso) { return iso ? String(iso).replace('T', ' ').replace(/\\.\\d+Z$/, 'Z') : '\\u2013'; }
/** Seconds since t0 (ms), as an axis tick: +12.5 s, +3 min 20 s. */
function since(ms) {
  var s = ms / 1000;
  if (Math.abs(s) < 120) return '+' + Number(s.toFixed(1)) + ' s';
  return '+' + Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
}
function chartBox(size) {
  var wrap = el('div', 'chart' + (size ? ' ' + size : ''));
  var canvas = el('canvas');
  canvas.setAttribute('role', 'img');
  wrap.appendChild(canvas);
  return { wrap: wrap, canvas: canvas };
}
`;

/** The data check report: header and verdict, then one card per feature, drifted first. */
export const DATA_CHECK_SCRIPT = `(function () {
  var r = REPORT;
  var main = document.getElementById('report');
  document.title = 'Data check: ' + (r.current.source || 'current data');
  add(main, el('h1', null, 'Data check'));
  add(main, el('p', 'sub', 'Generated ' + when(r.generatedAt) + ' by mlctl data check'));

  var head = el('section', 'card');
  add(head, facts([
    ['Reference', r.reference.source || '(profile)'],
    ['Reference rows', r.reference.rows],
    ['Current data', r.current.source || '(data)'],
    ['Current rows', r.current.rows],
    ['Features compared', r.verdict.comparedFeatures],
    ['Features drifted', r.verdict.driftedFeatures + ' (share ' + num(r.verdict.datasetDriftShare) + ')'],
    ['Data set drifts at share', num(r.verdict.driftShare)],
    ['Data problems', r.verdict.problems]
  ]));
  var v = add(el('p', 'verdict'), badge(r.verdict.ok ? 'OK' : 'PROBLEMS', r.verdict.ok ? 'pass' : 'fail'));
  v.appendChild(document.createTextNode(' ' + r.verdict.text));
  add(head, v);
  add(main, head);

  if (r.dataProblems.length > 0) {
    var dp = add(el('section', 'card'), el('h3', null, 'Problems of the data set'));
    var ul = el('ul', 'problems');
    r.dataProblems.forEach(function (p) { add(ul, add(el('li'), badge(p.kind, 'warn'), document.createTextNode(' ' + p.message))); });
    add(main, add(dp, ul));
  }

  add(main, el('h2', null, 'Features, drifted first'));
  r.features.forEach(function (f) {
    var card = el('section', 'card feature');
    card.setAttribute('data-drifted', String(f.drifted));
    var h = add(el('div', 'feature-head'), el('h3', 'feature-name', f.name));
    add(h, badge(f.type), f.role !== 'feature' ? badge(f.role) : null);
    add(h, f.skipped ? badge('not compared') : f.drifted ? badge('DRIFTED', 'fail') : badge('no drift', 'pass'));
    if (f.problems.length > 0) add(h, badge(f.problems.length + ' data problem' + (f.problems.length > 1 ? 's' : ''), 'warn'));
    add(card, h);

    var body = el('div', 'feature-body');
    var left = el('div');
    if (f.distribution) {
      var box = chartBox();
      add(left, box.wrap);
      var d = f.distribution;
      new Chart(box.canvas, {
        type: 'bar',
        data: {
          labels: d.labels,
          datasets: [
            { label: 'reference', data: d.reference, backgroundColor: COLORS.ref },
            { label: 'current', data: d.current, backgroundColor: COLORS.cur }
          ]
        },
        options: {
          plugins: {
            legend: { position: 'top', align: 'end' },
            tooltip: { callbacks: { label: function (c) { return c.dataset.label + ': ' + Number(c.parsed.y.toFixed(2)) + '%'; } } }
          },
          scales: {
            y: { beginAtZero: true, title: { display: true, text: '% of values' } },
            x: { ticks: { autoSkip: true, maxRotation: 45 } }
          }
        }
      });
      add(left, el('p', 'note', d.note));
    } else {
      add(left, el('p', 'note', f.skipped ? 'Not compared: ' + f.skipped : 'No distribution to plot.'));
    }
    var right = el('div');
    add(right, table(null, f.stats));
    if (f.problems.length > 0) {
      var pl = el('ul', 'problems');
      f.problems.forEach(function (p) { add(pl, add(el('li'), badge(p.kind, 'warn'), document.createTextNode(' ' + p.message))); });
      add(right, pl);
    }
    add(main, add(card, add(body, left, right)));
  });
})();
`;

/** The lifecycle report: header and outcome, traffic over time, one chart per check, approvals, the event log. */
export const LIFECYCLE_SCRIPT = `(function () {
  var r = REPORT;
  var lc = r.lifecycle;
  var t0 = Date.parse(lc.startedAt);
  /** Every time axis runs from the lifecycle's start to its end (or now). */
  var endMs = Date.parse(r.traffic.until) - t0;
  var main = document.getElementById('report');
  document.title = 'Lifecycle: ' + lc.model + ' ' + lc.version;
  add(main, el('h1', null, 'Lifecycle ' + lc.model + ' ' + lc.version));
  add(main, el('p', 'sub', lc.id + ' \\u00b7 generated ' + when(r.generatedAt) + ' by mlctl report'));

  var outcomeKind = lc.stage === 'promoted' ? 'pass' : lc.terminal ? 'fail' : 'warn';
  var head = el('section', 'card');
  add(head, facts([
    ['Model', lc.model],
    ['Candidate', lc.version],
    ['Stable version', lc.stableVersion],
    ['Submitted by', lc.submittedBy],
    ['Started', when(lc.startedAt)],
    ['Ended', lc.endedAt ? when(lc.endedAt) : 'running'],
    ['Traffic now', lc.trafficPercent + '%'],
    ['Policy rule', lc.policyRule]
  ]));
  var o = add(el('p', 'verdict'), badge(lc.stage, outcomeKind));
  o.appendChild(document.createTextNode(lc.error ? ' ' + lc.error.type + ': ' + lc.error.message : lc.terminal ? ' ended ' + lc.stage : ' in progress'));
  add(head, o);
  add(main, head);

  add(main, el('h2', null, 'Traffic to the candidate'));
  var tc = el('section', 'card');
  var tbox = chartBox('wide');
  tbox.canvas.id = 'traffic-chart';
  add(tc, tbox.wrap);
  var steps = r.traffic.points.map(function (p) { return { x: Date.parse(p.at) - t0, y: p.percent }; });
  if (steps.length === 0 || steps[0].x > 0) steps.unshift({ x: 0, y: 0 });
  steps.push({ x: Math.max(endMs, steps[steps.length - 1].x), y: steps[steps.length - 1].y });
  new Chart(tbox.canvas, {
    type: 'line',
    data: { datasets: [{ label: '% of traffic to ' + lc.version, data: steps, stepped: true, borderColor: COLORS.cur, backgroundColor: 'rgba(242,153,74,.18)', fill: true, pointRadius: 0 }] },
    options: {
      plugins: { legend: { display: false }, tooltip: { callbacks: { title: function (c) { return since(c[0].parsed.x); } } } },
      scales: {
        x: { type: 'linear', min: 0, max: endMs, ticks: { callback: function (v) { return since(v); } }, title: { display: true, text: 'time since the lifecycle started' } },
        y: { min: 0, max: 100, title: { display: true, text: '% of traffic' } }
      }
    }
  });
  add(tc, el('p', 'note', r.traffic.source));
  add(tc, table(['At', 'Since start', 'Candidate', 'Weights'], r.traffic.points.map(function (p) {
    return [when(p.at), since(Date.parse(p.at) - t0), p.percent + '%', p.weights];
  })));
  add(main, tc);

  add(main, el('h2', null, 'Checks against their thresholds'));
  add(main, el('p', 'note', r.checksNote));
  var legend = el('p', 'legend');
  ['pass', 'fail', 'inconclusive', 'error'].forEach(function (k) {
    var s = el('span', null, k);
    var dot = el('i');
    dot.style.background = COLORS[k];
    s.insertBefore(dot, s.firstChild);
    legend.appendChild(s);
  });
  add(main, legend);
  if (r.checks.length === 0) add(main, el('p', 'note', 'No check has run yet.'));
  var grid = el('div', 'checks');
  r.checks.forEach(function (c) {
    var card = el('section', 'card check');
    var h = add(el('div', 'feature-head'), el('h3', null, c.check));
    add(h, c.passed ? badge(c.passed + ' pass', 'pass') : null, c.failed ? badge(c.failed + ' fail', 'fail') : null, c.inconclusive ? badge(c.inconclusive + ' inconclusive') : null, c.errors ? badge(c.errors + ' error', 'warn') : null);
    add(card, h);
    if (c.rule) add(card, el('p', 'note', c.rule));
    var box = chartBox('small');
    add(card, box.wrap);
    var pts = c.samples.map(function (s) { return { x: Date.parse(s.at) - t0, y: s.value, s: s }; });
    var measured = pts.filter(function (p) { return p.y !== null; });
    var unmeasured = pts.filter(function (p) { return p.y === null; }).map(function (p) {
      return { x: p.x, y: p.s.threshold === null ? 0 : p.s.threshold, s: p.s };
    });
    // The threshold as it was at each sample, held from the lifecycle's start to its end.
    var thresholds = pts.filter(function (p) { return p.s.threshold !== null; }).map(function (p) { return { x: p.x, y: p.s.threshold }; });
    if (thresholds.length > 0) {
      thresholds.unshift({ x: 0, y: thresholds[0].y });
      thresholds.push({ x: endMs, y: thresholds[thresholds.length - 1].y });
    }
    var label = function (ctx) {
      var s = ctx.raw.s;
      if (!s) return 'threshold ' + num(ctx.raw.y);
      return s.stage + (s.sample ? ' #' + s.sample : ' readout') + ': ' + (s.value === null ? 'no value' : num(s.value)) + ' (' + s.outcome + ')';
    };
    new Chart(box.canvas, {
      type: 'line',
      data: {
        datasets: [
          { label: 'value', data: measured, showLine: true, borderColor: COLORS.line, borderWidth: 1,
            pointRadius: 4, pointBackgroundColor: measured.map(function (p) { return COLORS[p.s.outcome] || COLORS.line; }),
            pointBorderColor: measured.map(function (p) { return COLORS[p.s.outcome] || COLORS.line; }) },
          { label: 'threshold', data: thresholds, borderColor: COLORS.threshold, borderDash: [6, 4], borderWidth: 1.5, pointRadius: 0, stepped: true },
          { label: 'no value', data: unmeasured, showLine: false, pointStyle: 'triangle', pointRadius: 5,
            pointBackgroundColor: unmeasured.map(function (p) { return COLORS[p.s.outcome] || COLORS.inconclusive; }) }
        ]
      },
      options: {
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: label, title: function (c) { return since(c[0].parsed.x); } } } },
        scales: {
          x: { type: 'linear', min: 0, max: endMs, ticks: { callback: function (v) { return since(v); }, maxTicksLimit: 6 } },
          y: { beginAtZero: true }
        }
      }
    });
    if (c.note) add(card, el('p', 'note', c.note));
    grid.appendChild(card);
  });
  add(main, grid);

  add(main, el('h2', null, 'Approvals'));
  var ac = el('section', 'card');
  add(ac, r.approvals.length === 0 ? el('p', 'note', 'No gate was decided.') : table(
    ['Gate', 'Decision', 'By', 'At', 'Signed key', 'Reason'],
    r.approvals.map(function (a) {
      return [a.opening || a.gate, badge(a.decision, a.decision === 'approved' ? 'pass' : 'fail'), a.by, when(a.at), a.keyId || 'unsigned', a.reason];
    })));
  if (r.operatorActions.length > 0) {
    add(ac, el('h3', null, 'Operator actions'));
    add(ac, table(['Action', 'By', 'At', 'Signed key', 'Reason'], r.operatorActions.map(function (a) {
      return [a.action, a.by, when(a.at), a.keyId || 'unsigned', a.reason];
    })));
  }
  add(main, ac);

  add(main, el('h2', null, 'Events'));
  add(main, add(el('section', 'card events'), table(['At', 'Since start', 'Stage', 'Event'], r.events.map(function (e) {
    return [when(e.at), since(Date.parse(e.at) - t0), e.stage, e.message];
  }))));
})();
`;
