// Eddy's web console: plain JavaScript, no framework, no build step, nothing
// fetched from anywhere but this server. It reads the JSON API under /api/
// (see docs/CONSOLE.md) and draws three pages, picked by the URL's hash:
//   #/pipelines          every pipeline, with Stop / Stop with savepoint / Restart
//   #/pipeline/ID        one pipeline: its SQL, operator graph and charts, live
//   #/relations[/NAME]   tables and views: schemas, a view's rows, a SQL box
'use strict';
(function () {
  const TOKEN_KEY = 'eddy.token';
  const SQL_KEY = 'eddy.sql';
  const POLL_MS = 1000;
  const PAGE_ROWS = 50;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  // ---------------------------------------------------------------- DOM helpers

  function build(element, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'text') element.textContent = value;
      else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
      else element.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }
  /** An HTML element: h('td', {class: 'num'}, 'text', child, ...). */
  function h(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }
  /** An SVG element. */
  function svg(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }
  /** Sets an element's text (and its data-value) only when it changed. */
  function setText(element, text, value) {
    text = String(text);
    if (element.textContent !== text) element.textContent = text;
    if (value !== undefined) element.setAttribute('data-value', value === null ? '' : String(value));
  }

  // ----------------------------------------------------------------- formatting

  const DASH = '\u2014';
  function fmtInt(n) {
    return n === null || n === undefined ? DASH : Math.round(n).toLocaleString('en-US');
  }
  function fmtRate(x) {
    if (x === null || x === undefined || !isFinite(x)) return DASH;
    return x >= 100 ? fmtInt(x) : x.toFixed(1);
  }
  function fmtCompact(x) {
    const a = Math.abs(x);
    if (a >= 1e9) return +(x / 1e9).toFixed(1) + 'G';
    if (a >= 1e6) return +(x / 1e6).toFixed(1) + 'M';
    if (a >= 1e3) return +(x / 1e3).toFixed(1) + 'k';
    if (a >= 10 || a === 0) return String(Math.round(x));
    return String(+x.toFixed(2));
  }
  function fmtBytes(b) {
    if (b === null || b === undefined) return DASH;
    if (b < 1024) return b + ' B';
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let i = -1;
    do {
      b /= 1024;
      i++;
    } while (b >= 1024 && i < units.length - 1);
    return b.toFixed(b >= 100 ? 0 : 1) + ' ' + units[i];
  }
  function fmtDuration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return DASH;
    if (ms < 0) ms = 0;
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + ' s';
    const pad = (n) => String(Math.floor(n)).padStart(2, '0');
    if (s < 3600) return Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + pad((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + pad((s % 86400) / 3600) + 'h';
  }
  function fmtClock(ms) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, '0');
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function fmtDateTime(ms) {
    if (!ms) return DASH;
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + fmtClock(ms);
  }
  function uptimeMs(p, nowMs) {
    return p.status === 'RUNNING' && p.started_at_ms ? nowMs - p.started_at_ms : null;
  }
  function watermarkLagMs(p, nowMs) {
    return p.watermark_ms === null || p.watermark_ms === undefined ? null : nowMs - p.watermark_ms;
  }
  function checkpointText(p, nowMs) {
    if (!p.checkpoint_id) return 'none yet';
    let text = '#' + p.checkpoint_id + ' \u00b7 ' + fmtDuration(p.checkpoint_ms);
    if (p.checkpoint_at_ms) text += ' \u00b7 ' + fmtDuration(nowMs - p.checkpoint_at_ms) + ' ago';
    return text;
  }

  // ------------------------------------------------------------ banner, notices

  const banner = document.getElementById('banner');
  const bannerText = document.getElementById('banner-text');
  let bannerSource = null;
  let noticeTimer = null;
  /** A red banner that stays until dismissed (or, for `poll` errors, until the next poll succeeds). */
  function showError(message, source) {
    clearTimeout(noticeTimer);
    bannerSource = source || 'action';
    // Counted on <body> (data-errors), so a test can tell none was shown.
    document.body.dataset.errors = Number(document.body.dataset.errors || 0) + 1;
    banner.className = 'error';
    bannerText.textContent = message;
    banner.hidden = false;
  }
  function showNotice(message) {
    clearTimeout(noticeTimer);
    bannerSource = 'notice';
    banner.className = 'notice';
    bannerText.textContent = message;
    banner.hidden = false;
    noticeTimer = setTimeout(() => clearBanner('notice'), 6000);
  }
  function clearBanner(source) {
    if (source === undefined || bannerSource === source) {
      banner.hidden = true;
      bannerSource = null;
    }
  }
  document.getElementById('banner-close').addEventListener('click', () => clearBanner());

  // ------------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || 'HTTP ' + status);
      this.status = status;
      this.body = body || {};
    }
  }
  /** Thrown when the server asked for a token: the prompt is up, the page waits. */
  class AuthRequired extends Error {}

  let tokenPending = false;

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { error: 'cannot reach the Eddy server (' + e.message + ')' });
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = { error: (response.ok ? 'not JSON: ' : '') + text.slice(0, 300) };
        if (response.ok) throw new ApiError(response.status, data);
      }
    }
    if (response.status === 401) {
      askForToken(token ? 'The server refused this token' + (data && data.error ? ': ' + data.error : '.') : null);
      throw new AuthRequired('a token is needed');
    }
    if (!response.ok) {
      const error = new ApiError(response.status, data && data.error ? data : { error: response.status + ' ' + response.statusText });
      throw error;
    }
    return data;
  }
  function describe(error) {
    if (error instanceof ApiError) return error.status ? error.message + ' (HTTP ' + error.status + ')' : error.message;
    return String(error && error.message ? error.message : error);
  }
  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- token prompt

  const overlay = document.getElementById('token-overlay');
  const tokenInput = document.getElementById('token');
  const tokenError = document.getElementById('token-error');
  const changeToken = document.getElementById('change-token');

  function askForToken(message) {
    tokenPending = true;
    if (message) {
      tokenError.textContent = message;
      tokenError.hidden = false;
    } else if (overlay.hidden) {
      tokenError.hidden = true;
    }
    if (overlay.hidden) {
      overlay.hidden = false;
      tokenInput.value = '';
      tokenInput.focus();
    }
  }
  document.getElementById('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim();
    if (!token) {
      tokenError.textContent = 'Enter a token.';
      tokenError.hidden = false;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    overlay.hidden = true;
    tokenPending = false;
    changeToken.hidden = false;
    route();
  });
  changeToken.hidden = !sessionStorage.getItem(TOKEN_KEY);
  changeToken.addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken(null);
  });

  // --------------------------------------------------------------------- polling

  const refreshed = document.getElementById('refreshed');

  /** Refreshes one page every `page.interval` ms (once when 0), one request at a time. */
  class Poller {
    constructor(page) {
      this.page = page;
      this.stopped = false;
      this.busy = false;
      this.again = false;
      this.timer = null;
    }
    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
    }
    async run() {
      if (this.stopped || tokenPending) return;
      if (this.busy) {
        this.again = true;
        return;
      }
      clearTimeout(this.timer);
      this.busy = true;
      try {
        await this.page.refresh(() => !this.stopped);
        if (!this.stopped) {
          // Counted on <body> (data-polls): each completed refresh, in order.
          document.body.dataset.polls = Number(document.body.dataset.polls || 0) + 1;
          clearBanner('poll');
          refreshed.textContent = 'Updated ' + fmtClock(Date.now());
        }
      } catch (e) {
        if (!this.stopped && !(e instanceof AuthRequired)) {
          showError(describe(e), 'poll');
          refreshed.textContent = 'Update failed ' + fmtClock(Date.now());
        }
      } finally {
        this.busy = false;
      }
      if (this.stopped || tokenPending) return;
      if (this.again) {
        this.again = false;
        this.run();
      } else if (this.page.interval) {
        this.timer = setTimeout(() => this.run(), this.page.interval);
      }
    }
  }

  // ---------------------------------------------------------------------- router

  const app = document.getElementById('app');
  let poller = null;

  function route() {
    const hash = location.hash.replace(/^#\/?/, '');
    const [first, ...rest] = hash.split('/');
    const arg = rest.length ? decodeURIComponent(rest.join('/')) : null;
    let page;
    if (first === 'pipeline' && arg) page = pipelinePage(arg);
    else if (first === 'relations') page = relationsPage(arg);
    else page = pipelinesPage();
    for (const link of document.querySelectorAll('[data-nav]')) {
      link.classList.toggle('active', link.getAttribute('data-nav') === page.nav);
    }
    document.title = page.title + ' \u00b7 Eddy console';
    if (poller) poller.stop();
    if (bannerSource === 'poll') clearBanner();
    app.replaceChildren(page.el);
    poller = new Poller(page);
    poller.run();
  }
  function refreshNow() {
    if (poller) poller.run();
  }
  window.addEventListener('hashchange', route);

  // ----------------------------------------------------------- pipeline actions

  function statusBadge(status) {
    return h('span', { class: 'badge status-' + String(status || 'unknown').toLowerCase(), text: status || '?' });
  }
  function updateBadge(badge, status) {
    badge.className = 'badge status-' + String(status || 'unknown').toLowerCase();
    setText(badge, status || '?');
  }

  const ACTIONS = [
    { action: 'stop', label: 'Stop', title: 'Stop; a restart resumes from the last checkpoint' },
    { action: 'stop-savepoint', label: 'Stop with savepoint', title: 'Take a savepoint, then stop' },
    { action: 'restart', label: 'Restart', title: 'Start again from the last checkpoint or savepoint' },
  ];
  /** The three action buttons of pipeline `id`; `parallelism()` names a restart's parallelism (or null). */
  function actionButtons(id, parallelism) {
    const buttons = ACTIONS.map((a) =>
      h('button', { type: 'button', class: a.action === 'restart' ? 'small' : 'small danger', 'data-action': a.action, title: a.title, text: a.label })
    );
    for (const button of buttons) {
      button.addEventListener('click', () => runAction(id, button.getAttribute('data-action'), buttons, parallelism));
    }
    return buttons;
  }
  function enableButtons(buttons, status) {
    if (buttons.some((b) => b.classList.contains('busy'))) return;
    for (const button of buttons) {
      const restart = button.getAttribute('data-action') === 'restart';
      button.disabled = restart ? status === 'RUNNING' : status !== 'RUNNING';
    }
  }
  async function runAction(id, action, buttons, parallelism) {
    const restart = action === 'restart';
    const path = '/api/pipelines/' + enc(id) + (restart ? '/restart' : '/stop');
    let body;
    if (restart) {
      const n = parallelism ? parallelism() : null;
      body = n ? { parallelism: n } : {};
    } else {
      body = { savepoint: action === 'stop-savepoint' };
    }
    for (const button of buttons) {
      button.disabled = true;
      button.classList.add('busy');
    }
    try {
      const answer = await api('POST', path, body);
      const p = answer && answer.pipeline;
      if (restart) showNotice('Restarted pipeline ' + id + (p && p.parallelism ? ' (parallelism ' + p.parallelism + ')' : '') + '.');
      else if (answer && answer.savepoint_id !== null && answer.savepoint_id !== undefined)
        showNotice('Stopped pipeline ' + id + ' with savepoint ' + answer.savepoint_id + '.');
      else showNotice('Stopped pipeline ' + id + '.');
    } catch (e) {
      if (!(e instanceof AuthRequired)) showError('Could not ' + (restart ? 'restart' : 'stop') + ' pipeline ' + id + ': ' + describe(e));
    } finally {
      for (const button of buttons) button.classList.remove('busy');
      refreshNow();
    }
  }

  // ------------------------------------------------------------- pipelines page

  const PIPELINE_COLUMNS = [
    ['id', 'ID', ''],
    ['name', 'Writes to', ''],
    ['status', 'Status', ''],
    ['uptime', 'Uptime', 'num'],
    ['rows_in', 'Rows in', 'num'],
    ['rows_out', 'Rows out', 'num'],
    ['rows_in_per_second', 'Rows in/s', 'num'],
    ['watermark_lag', 'Watermark lag', 'num'],
    ['checkpoint', 'Last checkpoint', ''],
    ['actions', '', 'actions'],
  ];

  function pipelinesPage() {
    const tbody = h('tbody');
    const count = h('span', { class: 'muted', id: 'pipeline-count' });
    const empty = h(
      'div',
      { class: 'empty', id: 'no-pipelines', hidden: true },
      'No pipelines yet. Start one with ',
      h('code', { text: 'INSERT INTO \u2026' }),
      ' or ',
      h('code', { text: 'CREATE MATERIALIZED VIEW \u2026' }),
      ' in the SQL box under ',
      h('a', { href: '#/relations', text: 'Tables & views' }),
      '.'
    );
    const table = h(
      'table',
      { id: 'pipelines', class: 'data' },
      h('thead', {}, h('tr', {}, PIPELINE_COLUMNS.map(([field, label, cls]) => h('th', { class: cls || null, 'data-field': field, text: label })))),
      tbody
    );
    const el = h('section', { class: 'page' }, h('div', { class: 'page-head' }, h('h1', { text: 'Pipelines' }), count), h('div', { class: 'card flush' }, table), empty);
    const rows = new Map();

    function newRow(p) {
      const cells = {};
      const tr = h('tr', { 'data-pipeline': p.id });
      for (const [field, , cls] of PIPELINE_COLUMNS) {
        cells[field] = h('td', { class: cls || null, 'data-field': field });
        tr.append(cells[field]);
      }
      cells.id.append(h('a', { href: '#/pipeline/' + enc(p.id), class: 'mono', text: p.id }));
      cells.badge = statusBadge(p.status);
      cells.status.append(cells.badge);
      cells.nameText = h('a', { href: '#/pipeline/' + enc(p.id) });
      cells.error = h('div', { class: 'row-error', hidden: true });
      cells.name.append(cells.nameText, cells.error);
      cells.buttons = actionButtons(p.id, null);
      cells.actions.append(h('div', { class: 'buttons' }, cells.buttons));
      return { tr, cells };
    }

    async function refresh(live) {
      const data = await api('GET', '/api/pipelines');
      if (!live()) return;
      const now = data.now_ms;
      const list = data.pipelines || [];
      const seen = new Set();
      list.forEach((p, index) => {
        seen.add(p.id);
        let row = rows.get(p.id);
        if (!row) {
          row = newRow(p);
          rows.set(p.id, row);
        }
        if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] || null);
        const c = row.cells;
        setText(c.nameText, p.name);
        updateBadge(c.badge, p.status);
        c.status.setAttribute('data-value', p.status);
        c.error.hidden = !p.error;
        setText(c.error, p.error || '');
        c.error.title = p.error || '';
        const up = uptimeMs(p, now);
        setText(c.uptime, fmtDuration(up), up);
        setText(c.rows_in, fmtInt(p.rows_in), p.rows_in);
        setText(c.rows_out, fmtInt(p.rows_out), p.rows_out);
        setText(c.rows_in_per_second, fmtRate(p.rows_in_per_second), p.rows_in_per_second);
        const lag = watermarkLagMs(p, now);
        setText(c.watermark_lag, fmtDuration(lag), lag);
        setText(c.checkpoint, checkpointText(p, now), p.checkpoint_id);
        enableButtons(c.buttons, p.status);
      });
      for (const [id, row] of rows) {
        if (!seen.has(id)) {
          row.tr.remove();
          rows.delete(id);
        }
      }
      const running = list.filter((p) => p.status === 'RUNNING').length;
      setText(count, list.length + ' pipeline' + (list.length === 1 ? '' : 's') + ', ' + running + ' running');
      empty.hidden = list.length > 0;
      table.hidden = list.length === 0;
    }
    return { nav: 'pipelines', title: 'Pipelines', el, refresh, interval: POLL_MS };
  }

  // ---------------------------------------------------------- one pipeline page

  const CHARTS = [
    { key: 'throughput', title: 'Throughput', unit: 'rows in/s', value: (s) => s.rows_in_per_second, fmt: fmtRate },
    {
      key: 'watermark_lag',
      title: 'Watermark lag',
      unit: 's',
      value: (s) => (s.watermark_lag_ms === null || s.watermark_lag_ms === undefined ? null : s.watermark_lag_ms / 1000),
      fmt: (v) => (v === null ? DASH : v.toFixed(v >= 100 ? 0 : 1)),
    },
    { key: 'checkpoint_ms', title: 'Checkpoint duration', unit: 'ms', value: (s) => s.checkpoint_ms, fmt: fmtInt },
    { key: 'late_rows', title: 'Late rows', unit: 'since the run started', value: (s) => s.late_rows, fmt: fmtInt },
  ];

  const STATS = [
    ['status', 'Status'],
    ['uptime', 'Uptime'],
    ['rows_in', 'Rows in'],
    ['rows_out', 'Rows out'],
    ['rows_in_per_second', 'Rows in/s'],
    ['watermark_lag', 'Watermark lag'],
    ['watermark', 'Watermark'],
    ['late_rows', 'Late rows'],
    ['malformed_rows', 'Malformed rows'],
    ['null_time_rows', 'Rows without event time'],
    ['lag_rows', 'Source lag (records)'],
    ['state', 'State'],
    ['checkpoint', 'Last checkpoint'],
    ['parallelism', 'Parallelism'],
    ['view_freshness', 'View freshness'],
    ['sink', 'Sink'],
  ];

  function pipelinePage(id) {
    const title = h('h1', { id: 'pipeline-title' }, h('span', { class: 'muted', text: 'Pipeline ' }), h('span', { class: 'mono', text: id }));
    const badge = statusBadge('');
    const parallelismInput = h('input', { id: 'parallelism', type: 'number', min: 1, max: 1024, placeholder: 'tasks', title: 'Parallelism for Restart (empty: keep it)' });
    const buttons = actionButtons(id, () => {
      const n = parseInt(parallelismInput.value, 10);
      return n > 0 ? n : null;
    });
    const errorBox = h('div', { id: 'pipeline-error', class: 'callout error', hidden: true });
    const stats = {};
    const grid = h(
      'div',
      { class: 'stats', id: 'pipeline-stats' },
      STATS.map(([field, label]) => {
        stats[field] = h('div', { class: 'stat-value', 'data-field': field, text: DASH });
        return h('div', { class: 'stat' }, h('div', { class: 'stat-label', text: label }), stats[field]);
      })
    );
    const sqlText = h('pre', { id: 'pipeline-sql', class: 'sql' });
    const graph = svg('svg', { id: 'graph', role: 'img', 'aria-label': 'Operator graph' });
    const graphNote = h('p', { class: 'muted small', id: 'graph-note' });
    const charts = {};
    const chartCards = CHARTS.map((c) => {
      const value = h('span', { class: 'chart-value', 'data-chart-value': c.key });
      charts[c.key] = { svg: svg('svg', { class: 'chart', 'data-chart': c.key, viewBox: '0 0 ' + CW + ' ' + CH, role: 'img', 'aria-label': c.title }), value };
      return h('div', { class: 'card chart-card' }, h('div', { class: 'chart-head' }, h('h3', {}, c.title + ' ', h('span', { class: 'muted', text: '(' + c.unit + ')' })), value), charts[c.key].svg);
    });
    const el = h(
      'section',
      { class: 'page', 'data-pipeline': id },
      h('div', { class: 'crumbs' }, h('a', { href: '#/pipelines', text: 'Pipelines' }), ' / ', h('span', { class: 'mono', text: id })),
      h('div', { class: 'page-head' }, title, badge, h('div', { class: 'spacer' }), h('div', { class: 'buttons' }, buttons[0], buttons[1], parallelismInput, buttons[2])),
      errorBox,
      grid,
      h('div', { class: 'card' }, h('h2', { text: 'Operator graph' }), h('div', { class: 'graph-wrap' }, graph), graphNote),
      h('div', { class: 'charts' }, chartCards),
      h('div', { class: 'card' }, h('h2', { text: 'SQL' }), sqlText)
    );

    let previous = null; // the last poll: {now, ops: Map(id -> op), stages: Map(id -> stage)}

    async function refresh(live) {
      const data = await api('GET', '/api/pipelines/' + enc(id));
      if (!live()) return;
      const p = data.pipeline;
      const now = data.now_ms;
      title.replaceChildren(h('span', { text: p.name || id }), ' ', h('span', { class: 'muted mono small', text: p.id }));
      updateBadge(badge, p.status);
      badge.id = 'pipeline-status';
      enableButtons(buttons, p.status);
      errorBox.hidden = !p.error;
      setText(errorBox, p.error ? 'Failed: ' + p.error : '');
      const up = p.status !== 'RUNNING' ? null : data.uptime_ms !== undefined && data.uptime_ms !== null ? data.uptime_ms : uptimeMs(p, now);
      setText(stats.status, p.status, p.status);
      setText(stats.uptime, fmtDuration(up), up);
      setText(stats.rows_in, fmtInt(p.rows_in), p.rows_in);
      setText(stats.rows_out, fmtInt(p.rows_out), p.rows_out);
      setText(stats.rows_in_per_second, fmtRate(p.rows_in_per_second), p.rows_in_per_second);
      const lag = watermarkLagMs(p, now);
      setText(stats.watermark_lag, fmtDuration(lag), lag);
      setText(stats.watermark, p.watermark_ms === null || p.watermark_ms === undefined ? 'none yet' : fmtDateTime(p.watermark_ms), p.watermark_ms);
      setText(stats.late_rows, fmtInt(p.late_rows), p.late_rows);
      setText(stats.malformed_rows, fmtInt(p.malformed_rows), p.malformed_rows);
      setText(stats.null_time_rows, fmtInt(p.null_time_rows), p.null_time_rows);
      setText(stats.lag_rows, p.lag_rows === null || p.lag_rows === undefined ? 'unknown' : fmtInt(p.lag_rows), p.lag_rows);
      setText(stats.state, fmtInt(p.state_rows) + ' rows \u00b7 ' + fmtBytes(p.state_bytes), p.state_bytes);
      setText(stats.checkpoint, checkpointText(p, now) + (p.checkpoint_id ? ' \u00b7 ' + fmtBytes(p.checkpoint_bytes) : ''), p.checkpoint_id);
      setText(stats.parallelism, fmtInt(p.parallelism), p.parallelism);
      const asOf = p.view_as_of_ms;
      setText(stats.view_freshness, asOf === null || asOf === undefined ? 'n/a' : fmtDuration(now - asOf) + ' behind', asOf);
      const sink = data.sink;
      setText(stats.sink, sink ? sink.table + ': ' + fmtInt(sink.rows_written) + ' written, ' + fmtInt(sink.rows_committed) + ' committed' : p.name, sink ? sink.rows_committed : null);
      if (sqlText.textContent !== (p.sql || '')) sqlText.textContent = p.sql || '';

      const current = { now, ops: new Map(), stages: new Map(), sink: data.sink || null };
      const stages = (data.graph && data.graph.stages) || [];
      for (const stage of stages) {
        current.stages.set(stage.id, stage);
        for (const op of stage.operators || []) current.ops.set(op.id, op);
      }
      drawGraph(graph, stages, previous, current);
      setText(graphNote, stages.length ? 'Rates and back-pressure are measured between the last two updates (every ' + POLL_MS / 1000 + ' s).' : 'No operator graph: the pipeline is not running.');
      previous = current;

      const history = data.history || [];
      for (const c of CHARTS) {
        const points = history.map((s) => ({ t: s.at_ms, v: c.value(s) }));
        drawChart(charts[c.key].svg, points, c);
        const last = points.length ? points[points.length - 1].v : null;
        setText(charts[c.key].value, last === null || last === undefined ? DASH : c.fmt(last));
      }
    }
    return { nav: 'pipelines', title: 'Pipeline ' + id, el, refresh, interval: POLL_MS };
  }

  // --------------------------------------------------------------- graph (SVG)

  const BOX_W = 300;
  const HEAD_H = 44;
  const OP_H = 42;
  const COL_GAP = 80;
  const ROW_GAP = 28;
  const PAD = 12;

  /** Rate in rows/s of counter `field` between two polls (null without a previous one, or after a reset). */
  function rate(before, after, field, seconds) {
    if (!before || !(seconds > 0)) return null;
    const delta = after[field] - before[field];
    return delta >= 0 ? delta / seconds : null;
  }
  function truncate(text, max) {
    return text.length > max ? text.slice(0, max - 1) + '\u2026' : text;
  }

  function drawGraph(root, stages, previous, current) {
    root.replaceChildren();
    if (!stages.length) {
      root.setAttribute('width', 0);
      root.setAttribute('height', 0);
      return;
    }
    const seconds = previous ? (current.now - previous.now) / 1000 : 0;
    // Columns: a stage sits one column right of the furthest stage feeding it.
    const inputs = new Map(stages.map((s) => [s.id, []]));
    for (const s of stages) if (s.output !== null && s.output !== undefined && inputs.has(s.output)) inputs.get(s.output).push(s.id);
    const column = new Map();
    const depth = (sid, seen) => {
      if (column.has(sid)) return column.get(sid);
      if (seen.has(sid)) return 0; // a cycle: not expected, but never loop forever
      seen.add(sid);
      const d = inputs.get(sid).reduce((m, i) => Math.max(m, depth(i, seen) + 1), 0);
      column.set(sid, d);
      return d;
    };
    for (const s of stages) depth(s.id, new Set());
    const columns = [];
    for (const s of stages) (columns[column.get(s.id)] = columns[column.get(s.id)] || []).push(s);
    // In a column, stages feeding the same stage stay together, in its inputs' order (a join's left side on top).
    const order = (s) => [s.output === null || s.output === undefined ? Infinity : s.output, s.input || 0, s.id];
    for (const col of columns) col.sort((a, b) => order(a)[0] - order(b)[0] || order(a)[1] - order(b)[1] || a.id - b.id);
    const boxH = (s) => HEAD_H + Math.max(1, (s.operators || []).length) * OP_H + 6;
    const colH = columns.map((col) => col.reduce((sum, s) => sum + boxH(s), 0) + ROW_GAP * (col.length - 1));
    const height = Math.max(...colH) + 2 * PAD;
    const width = columns.length * BOX_W + (columns.length - 1) * COL_GAP + 2 * PAD;
    root.setAttribute('width', width);
    root.setAttribute('height', height);
    root.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    root.append(
      svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow-head' })))
    );
    const place = new Map();
    columns.forEach((col, ci) => {
      let y = PAD + (height - 2 * PAD - colH[ci]) / 2;
      for (const s of col) {
        place.set(s.id, { x: PAD + ci * (BOX_W + COL_GAP), y, h: boxH(s) });
        y += boxH(s) + ROW_GAP;
      }
    });
    // Edges first, under the boxes.
    for (const s of stages) {
      if (s.output === null || s.output === undefined || !place.has(s.output)) continue;
      const a = place.get(s.id);
      const b = place.get(s.output);
      const x1 = a.x + BOX_W;
      const y1 = a.y + a.h / 2;
      const x2 = b.x - 2;
      const y2 = b.y + b.h / 2;
      const mid = (x1 + x2) / 2;
      root.append(svg('path', { class: 'edge', 'data-from': s.id, 'data-to': s.output, d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' }));
    }
    for (const s of stages) {
      const { x, y, h: bh } = place.get(s.id);
      const before = previous && previous.stages.get(s.id);
      let share = null;
      if (before && seconds > 0) {
        const delta = s.backpressured_ns - before.backpressured_ns;
        if (delta >= 0) share = Math.min(1, delta / (seconds * 1e9 * Math.max(1, s.tasks || 1)));
      }
      const g = svg('g', { class: 'stage stage-' + (s.kind || 'other'), 'data-stage': s.id, 'data-kind': s.kind || '', 'data-backpressure': share === null ? '' : share.toFixed(4) });
      g.append(
        svg('rect', { class: 'stage-box', x, y, width: BOX_W, height: bh, rx: 8 }),
        svg('rect', { class: 'stage-head', x, y, width: BOX_W, height: HEAD_H - 6, rx: 8 }),
        svg('rect', { class: 'stage-head', x, y: y + HEAD_H - 14, width: BOX_W, height: 8 }),
        svg('text', { x: x + 10, y: y + 16, class: 'stage-title', text: 'Stage ' + s.id + ' \u00b7 ' + truncate(s.name || s.kind || '', 26) }),
        svg('text', { x: x + BOX_W - 10, y: y + 16, class: 'stage-tasks', 'text-anchor': 'end', text: (s.tasks || 0) + (s.tasks === 1 ? ' task' : ' tasks') }),
        svg(
          'text',
          { x: x + 10, y: y + 31, class: 'stage-bp' + (share !== null && share >= 0.5 ? ' hot' : ''), 'data-field': 'backpressure' },
          'back-pressured ' + (share === null ? '\u2026' : (share * 100).toFixed(share < 0.1 && share > 0 ? 1 : 0) + '%')
        )
      );
      if (share !== null) g.append(svg('rect', { class: 'bp-bar', x: x + BOX_W - 90, y: y + 24, width: 80 * share, height: 6, rx: 2 }), svg('rect', { class: 'bp-track', x: x + BOX_W - 90, y: y + 24, width: 80, height: 6, rx: 2 }));
      (s.operators || []).forEach((op, i) => {
        const oy = y + HEAD_H + i * OP_H;
        const old = previous && previous.ops.get(op.id);
        const rIn = rate(old, op, 'rows_in', seconds);
        const rOut = rate(old, op, 'rows_out', seconds);
        const og = svg('g', {
          class: 'operator',
          'data-operator': op.id,
          'data-rows-in': op.rows_in,
          'data-rows-out': op.rows_out,
          'data-rate': rIn === null ? '' : rIn.toFixed(3),
          'data-state-bytes': op.state_bytes,
          'data-state-keys': op.state_keys,
        });
        og.append(
          svg('title', { text: op.name + '\n' + fmtInt(op.rows_in) + ' rows in, ' + fmtInt(op.rows_out) + ' rows out, ' + op.tasks + ' tasks' + (op.watermark_ms ? '\nwatermark ' + fmtDateTime(op.watermark_ms) : '') }),
          i ? svg('line', { class: 'op-sep', x1: x + 8, x2: x + BOX_W - 8, y1: oy, y2: oy }) : null,
          svg('text', { x: x + 10, y: oy + 16, class: 'op-name' }, svg('tspan', { class: 'op-id', text: op.id + '  ' }), truncate(op.name, 36)),
          svg(
            'text',
            { x: x + 10, y: oy + 33, class: 'op-figures' },
            svg('tspan', { 'data-field': 'rate', text: (rIn === null ? '\u2026' : fmtRate(rIn)) + ' rows/s' }),
            svg('tspan', { class: 'muted', text: rOut === null ? '' : ' (out ' + fmtRate(rOut) + ')' }),
            ' \u00b7 ',
            svg('tspan', { 'data-field': 'state_bytes', text: fmtBytes(op.state_bytes) }),
            ' \u00b7 ',
            svg('tspan', { 'data-field': 'state_keys', text: fmtInt(op.state_keys) + ' keys' })
          )
        );
        g.append(og);
      });
      if (!(s.operators || []).length && s.kind === 'sink' && current.sink) {
        // The sink is not an operator of its own: its figures come with the pipeline's.
        const k = current.sink;
        const written = rate(previous && previous.sink, k, 'rows_written', seconds);
        const oy = y + HEAD_H;
        g.append(
          svg(
            'g',
            { class: 'sink-info', 'data-rows-written': k.rows_written, 'data-rows-committed': k.rows_committed },
            svg('text', { x: x + 10, y: oy + 16, class: 'op-name', text: truncate('Sink ' + k.table, 40) }),
            svg(
              'text',
              { x: x + 10, y: oy + 33, class: 'op-figures' },
              svg('tspan', { 'data-field': 'rate', text: (written === null ? '\u2026' : fmtRate(written)) + ' rows/s' }),
              ' \u00b7 ',
              svg('tspan', { 'data-field': 'rows_written', text: fmtInt(k.rows_written) + ' written' }),
              ' \u00b7 ',
              svg('tspan', { 'data-field': 'rows_committed', text: fmtInt(k.rows_committed) + ' committed' })
            )
          )
        );
      }
      root.append(g);
    }
  }

  // -------------------------------------------------------------- charts (SVG)

  const CW = 600;
  const CH = 190;
  const M = { left: 52, right: 12, top: 12, bottom: 26 };

  /** A "nice" upper bound for an axis from 0 to `max`, and its step. */
  function niceScale(max) {
    if (!(max > 0)) return { top: 1, step: 0.25 };
    const raw = max / 4;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    return { top: Math.ceil(max / step) * step, step };
  }

  function drawChart(root, points, spec) {
    root.replaceChildren();
    const valid = points.filter((p) => p.v !== null && p.v !== undefined && isFinite(p.v) && isFinite(p.t));
    const plotW = CW - M.left - M.right;
    const plotH = CH - M.top - M.bottom;
    const axis = svg('g', { class: 'axis' });
    root.append(axis);
    if (!valid.length) {
      axis.append(svg('rect', { class: 'plot-bg', x: M.left, y: M.top, width: plotW, height: plotH }));
      root.append(svg('text', { class: 'chart-empty', x: M.left + plotW / 2, y: M.top + plotH / 2, 'text-anchor': 'middle', text: 'no samples yet' }));
      return;
    }
    let t0 = Math.min(...points.map((p) => p.t));
    const t1 = Math.max(...points.map((p) => p.t));
    if (t1 - t0 < 1000) t0 = t1 - 1000;
    const { top, step } = niceScale(Math.max(...valid.map((p) => p.v)));
    const x = (t) => M.left + ((t - t0) / (t1 - t0)) * plotW;
    const y = (v) => M.top + plotH - (Math.max(0, v) / top) * plotH;
    axis.append(svg('rect', { class: 'plot-bg', x: M.left, y: M.top, width: plotW, height: plotH }));
    for (let v = 0; v <= top + step / 2; v += step) {
      axis.append(
        svg('line', { class: v ? 'grid' : 'baseline', x1: M.left, x2: M.left + plotW, y1: y(v), y2: y(v) }),
        svg('text', { class: 'tick', x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end', text: fmtCompact(v) })
      );
    }
    for (let i = 0; i <= 3; i++) {
      const t = t0 + ((t1 - t0) * i) / 3;
      axis.append(
        svg('line', { class: 'grid', x1: x(t), x2: x(t), y1: M.top, y2: M.top + plotH }),
        svg('text', { class: 'tick', x: x(t), y: CH - 8, 'text-anchor': i === 0 ? 'start' : i === 3 ? 'end' : 'middle', text: fmtClock(t) })
      );
    }
    // One polyline per run of samples with a value (a missing watermark breaks the line).
    let run = [];
    const runs = [];
    for (const p of points) {
      if (p.v === null || p.v === undefined || !isFinite(p.v)) {
        if (run.length) runs.push(run);
        run = [];
      } else run.push(p);
    }
    if (run.length) runs.push(run);
    for (const r of runs) {
      if (r.length >= 2) {
        const coords = r.map((p) => x(p.t).toFixed(1) + ',' + y(p.v).toFixed(1)).join(' ');
        root.append(svg('polygon', { class: 'area', points: x(r[0].t).toFixed(1) + ',' + y(0) + ' ' + coords + ' ' + x(r[r.length - 1].t).toFixed(1) + ',' + y(0) }));
        root.append(svg('polyline', { class: 'line', points: coords, 'data-points': r.length }));
      } else {
        root.append(svg('circle', { class: 'dot', cx: x(r[0].t), cy: y(r[0].v), r: 2.5 }));
      }
    }
    const last = valid[valid.length - 1];
    root.append(svg('circle', { class: 'last', cx: x(last.t), cy: y(last.v), r: 3.5 }, svg('title', { text: fmtClock(last.t) + ': ' + spec.fmt(last.v) + ' ' + spec.unit })));
  }

  // ------------------------------------------------------ tables and views page

  function relationsPage(selected) {
    const sqlBox = h('textarea', { id: 'sql', spellcheck: 'false', rows: 6, placeholder: 'SELECT * FROM my_view LIMIT 10;\n\nCtrl+Enter runs the statements.' });
    sqlBox.value = sessionStorage.getItem(SQL_KEY) || '';
    sqlBox.addEventListener('input', () => sessionStorage.setItem(SQL_KEY, sqlBox.value));
    const runButton = h('button', { id: 'run', type: 'button', class: 'primary', text: 'Run' });
    const sqlStatus = h('span', { id: 'sql-status', class: 'muted' });
    const sqlError = h('div', { id: 'sql-error', class: 'callout error', hidden: true });
    const results = h('div', { id: 'sql-results' });
    const list = h('ul', { id: 'relations', class: 'rel-list' });
    const detail = h('div', { id: 'relation-detail', class: 'rel-detail' });
    const el = h(
      'section',
      { class: 'page' },
      h('div', { class: 'page-head' }, h('h1', { text: 'Tables & views' })),
      h(
        'div',
        { class: 'card' },
        h('h2', { text: 'SQL' }),
        sqlBox,
        h('div', { class: 'toolbar' }, runButton, h('span', { class: 'muted small', text: 'Ctrl+Enter' }), h('div', { class: 'spacer' }), sqlStatus),
        sqlError,
        results
      ),
      h('div', { class: 'rel-layout' }, h('div', { class: 'card flush rel-side' }, h('h2', { text: 'Relations' }), list), h('div', { class: 'card rel-main' }, detail))
    );

    let relations = [];
    let offset = 0;

    async function runSql() {
      const sql = sqlBox.value;
      if (!sql.trim()) {
        sqlBox.focus();
        return;
      }
      runButton.disabled = true;
      runButton.textContent = 'Running\u2026';
      sqlError.hidden = true;
      setText(sqlStatus, '');
      const started = performance.now();
      try {
        const answer = await api('POST', '/api/sql', { sql });
        showResults(answer.results || []);
        setText(sqlStatus, (answer.results || []).length + ' statement' + ((answer.results || []).length === 1 ? '' : 's') + ' in ' + fmtDuration(performance.now() - started));
      } catch (e) {
        if (e instanceof AuthRequired) {
          results.replaceChildren();
        } else {
          showResults((e.body && e.body.results) || []);
          showSqlError(e, sql);
        }
      } finally {
        runButton.disabled = false;
        runButton.textContent = 'Run';
      }
      refreshNow(); // a statement may have created or dropped a relation
    }
    function showSqlError(e, sql) {
      const body = e.body || {};
      const line = body.line;
      const column = body.column;
      const message = body.error || describe(e);
      // Said once: the server's message may name the place already.
      const where = line && !message.toLowerCase().includes('line ' + line) ? 'Line ' + line + (column ? ', column ' + column : '') + ': ' : '';
      sqlError.replaceChildren(h('strong', { text: 'Error' }), ' ', where + message);
      sqlError.setAttribute('data-line', line || '');
      sqlError.setAttribute('data-column', column || '');
      sqlError.hidden = false;
      if (line) {
        // Put the cursor where the error is.
        const lines = sql.split('\n');
        let at = 0;
        for (let i = 0; i < Math.min(line - 1, lines.length); i++) at += lines[i].length + 1;
        at += Math.max(0, (column || 1) - 1);
        sqlBox.focus();
        sqlBox.setSelectionRange(at, Math.min(sql.length, at + 1));
      }
    }
    function showResults(list) {
      results.replaceChildren();
      const lastTable = list.map((r) => !!r.columns).lastIndexOf(true);
      list.forEach((r, i) => {
        const head = h('div', { class: 'result-head' }, h('span', { class: 'tag', text: r.tag || '' }));
        if (r.pipeline_id) head.append(' \u00b7 started pipeline ', h('a', { href: '#/pipeline/' + enc(r.pipeline_id), class: 'mono', 'data-pipeline-link': r.pipeline_id, text: r.pipeline_id }));
        const block = h('div', { class: 'result', 'data-result': i }, head);
        for (const notice of r.notices || []) block.append(h('div', { class: 'notice-line', text: notice }));
        if (r.columns) {
          block.append(dataTable(r.columns, r.rows || [], { id: i === lastTable ? 'result' : null, class: 'data result-table', 'data-result': i }));
          if (r.truncated) block.append(h('div', { class: 'muted small', text: 'Showing the first ' + fmtInt((r.rows || []).length) + ' rows.' }));
        }
        results.append(block);
      });
    }
    runButton.addEventListener('click', runSql);
    sqlBox.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        runSql();
      }
    });

    function renderList() {
      list.replaceChildren();
      if (!relations.length) list.append(h('li', { class: 'muted empty-item', text: 'No tables or views yet.' }));
      for (const r of relations) {
        list.append(
          h(
            'li',
            { class: r.name === selected ? 'active' : null },
            h('a', { href: '#/relations/' + enc(r.name), 'data-relation': r.name }, h('span', { class: 'mono', text: r.name }), h('span', { class: 'badge kind-' + r.kind.replace(/ /g, '-'), text: r.kind }))
          )
        );
      }
    }

    async function renderDetail(live) {
      const r = relations.find((x) => x.name === selected);
      if (!selected) {
        detail.replaceChildren(h('p', { class: 'muted', text: relations.length ? 'Pick a table or view to see its columns (and a materialized view\u2019s rows).' : 'Create a table or view with the SQL box above.' }));
        return;
      }
      if (!r) {
        detail.replaceChildren(h('div', { class: 'callout error', text: 'No table or view named ' + selected + '.' }));
        return;
      }
      const parts = [
        h('div', { class: 'page-head' }, h('h2', { class: 'mono', text: r.name }), h('span', { class: 'badge kind-' + r.kind.replace(/ /g, '-'), text: r.kind })),
        h('h3', { text: 'Columns' }),
        h(
          'table',
          { id: 'schema', class: 'data' },
          h('thead', {}, h('tr', {}, h('th', { text: 'Column' }), h('th', { text: 'Type' }), h('th', { text: 'Nullable' }))),
          h(
            'tbody',
            {},
            r.columns.map((c) => h('tr', { 'data-column': c.name }, h('td', { class: 'mono', text: c.name }), h('td', { class: 'mono', text: c.type }), h('td', { text: c.nullable ? 'yes' : 'no' })))
          )
        ),
      ];
      if (r.definition) parts.push(h('h3', { text: 'Definition' }), h('pre', { id: 'relation-definition', class: 'sql', text: r.definition }));
      if (r.kind === 'materialized view') {
        const page = await api('GET', '/api/views/' + enc(r.name) + '/rows?offset=' + offset + '&limit=' + PAGE_ROWS);
        if (!live()) return;
        const total = page.total;
        const first = page.rows.length ? page.offset + 1 : 0;
        const prev = h('button', { id: 'prev', type: 'button', class: 'small', text: '\u2039 Prev', disabled: page.offset <= 0 });
        const next = h('button', { id: 'next', type: 'button', class: 'small', text: 'Next \u203a', disabled: page.offset + page.rows.length >= total });
        const reload = h('button', { id: 'reload-rows', type: 'button', class: 'small', text: 'Refresh' });
        prev.addEventListener('click', () => {
          offset = Math.max(0, offset - PAGE_ROWS);
          refreshNow();
        });
        next.addEventListener('click', () => {
          offset += PAGE_ROWS;
          refreshNow();
        });
        reload.addEventListener('click', refreshNow);
        const info = h('span', { id: 'page-info', class: 'muted', 'data-offset': page.offset, 'data-total': total, text: total ? 'Rows ' + fmtInt(first) + '\u2013' + fmtInt(page.offset + page.rows.length) + ' of ' + fmtInt(total) : 'No rows yet' });
        parts.push(h('div', { class: 'toolbar rows-head' }, h('h3', { text: 'Current rows' }), h('div', { class: 'spacer' }), info, prev, next, reload), dataTable(page.columns, page.rows, { id: 'view-rows', class: 'data' }));
        if (page.offset > 0 && page.offset >= total && total > 0) {
          // The view shrank under the current page: go back to its last page.
          offset = Math.floor((total - 1) / PAGE_ROWS) * PAGE_ROWS;
        }
      }
      detail.replaceChildren(...parts);
    }

    async function refresh(live) {
      const data = await api('GET', '/api/relations');
      if (!live()) return;
      relations = data.relations || [];
      renderList();
      await renderDetail(live);
    }
    return { nav: 'relations', title: selected ? selected : 'Tables & views', el, refresh, interval: 0 };
  }

  /** A table of `columns` and `rows` (display strings, null as NULL). */
  function dataTable(columns, rows, attrs) {
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        attrs,
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', { text: c })))),
        h(
          'tbody',
          {},
          rows.map((row) => h('tr', {}, row.map((v) => (v === null || v === undefined ? h('td', { class: 'null', text: 'NULL' }) : h('td', { text: v })))))
        )
      )
    );
  }

  window.addEventListener('error', (event) => showError('Console error: ' + event.message));
  window.addEventListener('unhandledrejection', (event) => {
    if (!(event.reason instanceof AuthRequired)) showError('Console error: ' + describe(event.reason));
  });
  if (!location.hash) history.replaceState(null, '', '#/pipelines');
  route();
})();
