// shiplog page script: relative times, live durations, and the log viewer.
// No build step; plain modern JavaScript.
(() => {
  'use strict';

  // ---- times -------------------------------------------------------------
  // As the server's views.Duration: tenths under ten seconds.
  const fmtDur = (ms) => {
    if (ms < 9950) return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
    return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
  };
  const fmtRel = (t) => {
    const s = Math.round((Date.now() - t) / 1000);
    if (s < 10) return 'just now';
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return new Date(t).toLocaleDateString();
  };
  // A log line's time: the local clock to the millisecond.
  const fmtClock = (ms) => {
    const d = new Date(ms), p = (n, w = 2) => String(n).padStart(w, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  };
  const tick = () => {
    for (const el of document.querySelectorAll('time[data-rel]')) el.textContent = fmtRel(Date.parse(el.dateTime));
    for (const el of document.querySelectorAll('[data-since]')) el.textContent = fmtDur(Date.now() - Date.parse(el.dataset.since));
  };
  setInterval(tick, 1000);
  // The dashboard's job filter hides the rows that do not match as one
  // types, and again after each refresh of the list.
  const filterJobs = () => {
    const input = document.querySelector('[data-job-filter]');
    if (!input) return;
    const q = input.value.trim().toLowerCase();
    let shown = 0;
    for (const row of document.querySelectorAll('tr[data-find]')) {
      row.hidden = !!q && !row.dataset.find.toLowerCase().includes(q);
      if (!row.hidden) shown++;
    }
    const none = document.querySelector('[data-no-jobs]');
    if (none) none.hidden = shown > 0;
  };
  document.addEventListener('input', (e) => { if (e.target.matches('[data-job-filter]')) filterJobs(); });
  document.addEventListener('htmx:afterSwap', filterJobs); // before it is drawn
  // A refresh waits while text in the part it would replace is selected
  // (htmx keeps the focus itself: focusable elements there have ids); an
  // open <details> (annotations' "N more") stays open through it.
  let keepOpen = [];
  document.addEventListener('htmx:beforeSwap', (e) => {
    const sel = getSelection();
    if (sel && !sel.isCollapsed && e.detail.target.contains(sel.anchorNode)) {
      e.detail.shouldSwap = false;
      document.body.dataset.heldSwaps = String((+document.body.dataset.heldSwaps || 0) + 1);
      return;
    }
    keepOpen = [...e.detail.target.querySelectorAll('details[id][open]:not([hx-preserve])')].map((d) => d.id);
  });
  document.addEventListener('htmx:afterSwap', () => {
    for (const id of keepOpen) document.getElementById(id)?.setAttribute('open', '');
    keepOpen = [];
  });
  // The run's state changed: the header refreshes. A change that comes
  // while the header is being fetched or swapped in (when htmx has no
  // listener for it: the old element is gone, the new one not yet wired)
  // is not lost: once the new header has settled, it asks again.
  let changes = 0, asked = 0;
  const statusChanged = () => {
    changes++;
    document.body.dispatchEvent(new CustomEvent('shiplog:status'));
  };
  document.addEventListener('htmx:beforeRequest', (e) => { if (e.detail.elt.id === 'run-head') asked = changes; });
  document.addEventListener('htmx:afterSettle', (e) => {
    if (e.detail.elt.id === 'run-head' && asked < changes) document.body.dispatchEvent(new CustomEvent('shiplog:status'));
  });
  // A filter form's lists apply as soon as one is changed.
  document.addEventListener('change', (e) => {
    const f = e.target.form;
    if (e.target.tagName === 'SELECT' && f && f.hasAttribute('data-autosubmit')) f.requestSubmit();
  });
  document.addEventListener('DOMContentLoaded', tick);
  document.addEventListener('htmx:afterSettle', tick);

  // ---- ANSI --------------------------------------------------------------
  const esc = (s) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
  // CSI sequences, OSC strings, and the few two-byte escapes.
  const ESC_RE = /\x1b\[([0-9;:?]*)([ -\/]*[@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>78]/g;
  const strip = (s) => s.replace(ESC_RE, '');
  const cube = [0, 95, 135, 175, 215, 255];
  const color256 = (n) => {
    if (n < 16) return null;
    if (n < 232) { n -= 16; return `rgb(${cube[Math.floor(n / 36)]},${cube[Math.floor(n / 6) % 6]},${cube[n % 6]})`; }
    const g = 8 + (n - 232) * 10; return `rgb(${g},${g},${g})`;
  };
  // Renders text with SGR styles as HTML; other escapes are dropped.
  // Characters that change how text reads without showing themselves
  // (bidi overrides and isolates, zero-width ones) are shown by their code,
  // as GitHub's hidden-Unicode warning does: U+202E would otherwise make
  // "evil.exe" read "exe.live". Kept: joiners, which emoji and scripts need.
  const HIDDEN_RE = /[\u061C\u200B\u200E\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]/g;
  const shown = (t) => esc(t).replace(HIDDEN_RE, (c) => `<span class="uc" title="hidden Unicode character">&lt;U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}&gt;</span>`);
  // marked renders text t, which starts at plain-text offset pos of its
  // line, with the parts inside hits ([from, to) offsets) in <mark>.
  const marked = (t, pos, hits) => {
    if (!hits) return shown(t);
    let out = '', at = 0;
    for (const [a, b] of hits) {
      const from = Math.max(a - pos, at), to = Math.min(b - pos, t.length);
      if (to <= from) continue;
      out += shown(t.slice(at, from)) + '<mark class="hit">' + shown(t.slice(from, to)) + '</mark>';
      at = to;
    }
    return out + shown(t.slice(at));
  };
  // ansi renders a line with its SGR styles as HTML (other escapes are
  // dropped), marking hits: offsets in the line's text without escapes.
  function ansi(s, hits) {
    if (s.indexOf('\x1b') < 0) return marked(s, 0, hits);
    let out = '', st = {}, last = 0, m, pos = 0;
    const open = () => {
      const cls = [], css = [];
      if (st.b) cls.push('b'); if (st.d) cls.push('d'); if (st.i) cls.push('i'); if (st.u) cls.push('u'); if (st.s) cls.push('s');
      let fg = st.fg, bg = st.bg;
      if (st.inv) [fg, bg] = [bg ?? 0, fg ?? 7];
      if (typeof fg === 'number') cls.push('f' + fg); else if (fg) css.push('color:' + fg);
      if (typeof bg === 'number') cls.push('g' + bg); else if (bg) css.push('background:' + bg);
      if (!cls.length && !css.length) return '';
      return `<span${cls.length ? ` class="${cls.join(' ')}"` : ''}${css.length ? ` data-c="${css.join(';')}"` : ''}>`;
    };
    let span = '';
    const text = (t) => {
      if (!t) return;
      const h = marked(t, pos, hits);
      pos += t.length;
      out += span ? span + h + '</span>' : h;
    };
    ESC_RE.lastIndex = 0;
    while ((m = ESC_RE.exec(s))) {
      text(s.slice(last, m.index));
      last = ESC_RE.lastIndex;
      if (m[2] !== 'm') continue;
      const p = m[1] === '' ? [0] : m[1].split(/[;:]/).map((x) => parseInt(x || '0', 10));
      for (let k = 0; k < p.length; k++) {
        const c = p[k];
        if (c === 0) st = {};
        else if (c === 1) st.b = true; else if (c === 2) st.d = true; else if (c === 3) st.i = true;
        else if (c === 4) st.u = true; else if (c === 7) st.inv = true; else if (c === 9) st.s = true;
        else if (c === 22) st.b = st.d = false; else if (c === 23) st.i = false; else if (c === 24) st.u = false;
        else if (c === 27) st.inv = false; else if (c === 29) st.s = false;
        else if (c >= 30 && c <= 37) st.fg = c - 30; else if (c >= 90 && c <= 97) st.fg = c - 82;
        else if (c >= 40 && c <= 47) st.bg = c - 40; else if (c >= 100 && c <= 107) st.bg = c - 92;
        else if (c === 39) st.fg = undefined; else if (c === 49) st.bg = undefined;
        else if (c === 38 || c === 48) {
          let v;
          if (p[k + 1] === 5) { const n = p[k + 2]; v = n < 16 ? n : color256(n); k += 2; }
          else if (p[k + 1] === 2) { v = `rgb(${p[k + 2] | 0},${p[k + 3] | 0},${p[k + 4] | 0})`; k += 4; }
          if (c === 38) st.fg = v; else st.bg = v;
        }
      }
      span = open();
    }
    text(s.slice(last));
    return out;
  }

  // A line holding \r shows what a terminal would: each part overwrites the
  // start of what came before.
  function carriage(s) {
    if (s.indexOf('\r') < 0) return s;
    if (s.endsWith('\r')) s = s.replace(/\r+$/, '');
    const parts = s.split('\r');
    if (parts.length === 1) return s;
    if (s.indexOf('\x1b') >= 0) {
      for (let i = parts.length - 1; i >= 0; i--) if (strip(parts[i])) return parts[i];
      return '';
    }
    let cur = '';
    for (const p of parts) cur = p + cur.slice(p.length);
    return cur;
  }

  // ---- terminal rows (term.js) ------------------------------------------
  // Plain http and https URLs in a row's text become links.
  const URL_RE = /\bhttps?:\/\/[^\s<>"'`\x00-\x1f\x7f]*[^\s<>"'`.,;:!?)\]}\x00-\x1f\x7f]/g;
  const link = (href, inner) => `<a class="url" href="${esc(href)}" target="_blank" rel="noopener noreferrer nofollow">${inner}</a>`;
  // linked renders text t, which starts at offset pos of its row, with its
  // URLs as links and the parts inside hits marked.
  const linked = (t, pos, hits) => {
    if (t.indexOf('http') < 0) return marked(t, pos, hits);
    let out = '', at = 0;
    URL_RE.lastIndex = 0;
    for (let m; (m = URL_RE.exec(t));) {
      out += marked(t.slice(at, m.index), pos + at, hits) + link(m[0], marked(m[0], pos + m.index, hits));
      at = m.index + m[0].length;
    }
    return out + marked(t.slice(at), pos + at, hits);
  };
  // styleAttrs is a terminal style as a class list and, for colours beyond
  // the palette, a data-c value the CSSOM applies (the Content-Security-
  // Policy refuses style attributes).
  const styleAttrs = (st) => {
    const cls = [], css = [];
    if (st.b) cls.push('b'); if (st.d) cls.push('d'); if (st.i) cls.push('i'); if (st.s) cls.push('s'); if (st.o) cls.push('o');
    if (st.u) cls.push(st.u === 1 ? 'u' : `u u${st.u}`);
    let fg = st.fg, bg = st.bg;
    if (st.inv) [fg, bg] = [bg ?? 0, fg ?? 7];
    if (typeof fg === 'number') cls.push('f' + fg); else if (fg) css.push('color:' + fg);
    if (typeof bg === 'number') cls.push('g' + bg); else if (bg) css.push('background:' + bg);
    if (typeof st.uc === 'string') css.push('text-decoration-color:' + st.uc);
    return (cls.length ? ` class="${cls.join(' ')}"` : '') + (css.length ? ` data-c="${esc(css.join(';'))}"` : '');
  };
  // rowHTML renders a screen row: its styles, links (OSC 8 and plain
  // URLs), concealed text as blanks, hits marked (offsets in its text).
  const rowHTML = (row, hits) => {
    if (!row.s) return linked(row.t, 0, hits);
    const { styles } = window.ShiplogTerm;
    let out = '';
    for (let i = 0; i < row.s.length; i += 2) {
      const from = row.s[i], to = i + 2 < row.s.length ? row.s[i + 2] : row.t.length;
      if (to <= from) continue;
      const st = styles[row.s[i + 1]];
      let part = row.t.slice(from, to);
      if (st.hid) part = ' '.repeat(part.length);
      const inner = st.link ? link(st.link, marked(part, from, hits)) : linked(part, from, hits);
      const attrs = styleAttrs(st);
      out += attrs ? `<span${attrs}>${inner}</span>` : inner;
    }
    return out;
  };

  // SSE lines that needed escaping start with \x1e (see the README).
  const decode = (v) => (v.charCodeAt(0) !== 0x1e ? v : v.slice(1).replace(/\\(.)/g, (_, c) => (c === 'r' ? '\r' : c)));

  // ---- log viewer --------------------------------------------------------
  const H = 20; // row height in px (see .log-view line-height)
  const OVERSCAN = 40;
  const K_PLAIN = 0, K_GROUP = 1, K_END = 2, K_CMD = 3, K_ERR = 4, K_WARN = 5, K_NOTE = 6, K_MARK = 7;
  // A workflow command's name, properties and value, read as the server
  // reads them (jobs.ParseCommand): "::name props::value" or "##[name]value".
  const HASH_CMDS = new Set(['group', 'endgroup', 'notice', 'warning', 'error', 'debug']);
  const command = (t) => {
    if (t.startsWith('##[')) {
      const e = t.indexOf(']');
      return e > 3 && HASH_CMDS.has(t.slice(3, e)) ? { name: t.slice(3, e), props: '', value: t.slice(e + 1) } : null;
    }
    if (!t.startsWith('::')) return null;
    const e = t.indexOf('::', 2);
    if (e < 0) return null;
    const head = t.slice(2, e), sp = head.indexOf(' ');
    return { name: sp < 0 ? head : head.slice(0, sp), props: sp < 0 ? '' : head.slice(sp + 1), value: t.slice(e + 2) };
  };
  const unData = (v) => v.replace(/%(25|0D|0A)/g, (_, c) => ({ 25: '%', '0D': '\r', '0A': '\n' })[c]);
  const unProp = (v) => v.replace(/%(25|0D|0A|3A|2C)/g, (_, c) => ({ 25: '%', '0D': '\r', '0A': '\n', '3A': ':', '2C': ',' })[c]);
  const prop = (props, key) => {
    for (const kv of props.split(',')) {
      const i = kv.indexOf('=');
      if (i > 0 && kv.slice(0, i).trim() === key) return unProp(kv.slice(i + 1).trim());
    }
    return '';
  };
  const CMD_KIND = { group: K_GROUP, endgroup: K_END, error: K_ERR, warning: K_WARN, notice: K_NOTE, progress: K_CMD, 'add-mask': K_CMD, debug: K_CMD, 'stop-commands': K_CMD };
  const classify = (t) => {
    const c = command(t);
    if (c && c.name in CMD_KIND) return CMD_KIND[c.name];
    if (t.endsWith('[shiplog: line longer than 4 MiB split here]') || t.startsWith('[shiplog: ')) return K_MARK; // logfile's markers and notes
    return K_PLAIN;
  };
  const KIND_CLASS = ['', 'grp', 'cmd', 'cmd', 'ann-error', 'ann-warning', 'ann-notice', 'marker'];

  const TAIL = 5000;        // a big log opens on its last lines
  // A live page holds at most HELD lines: past it, following, the oldest
  // go (back to KEEP), to be fetched again by range if scrolled to.
  const HELD = 20000, KEEP = 15000;
  const CHUNK = 512 << 10;  // bytes fetched per "load earlier"
  const utf8 = new TextDecoder('utf-8');
  // Whole lines from bytes that end with a newline.
  const splitLines = (bytes) => {
    const text = utf8.decode(bytes);
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return lines;
  };

  // LogView shows a window of a run's log: [startOffset, endOffset) in bytes,
  // lines first.. onwards. It grows upward by byte ranges of the raw log,
  // downward from the live stream, or by chunks when it shows a place far
  // from the end (a permalink or search match).
  class LogView {
    constructor(root) {
      this.root = root;
      this.url = root.dataset.events;
      this.raw = this.url.replace(/\/events$/, '/log');
      this.searchURL = this.url.replace(/\/events$/, '/search');
      this.timesURL = this.url.replace(/\/events$/, '/times');
      this.total = parseInt(root.dataset.lines || '0', 10);
      this.follow = true;
      this.query = '';
      this.matchNums = null; this.matchList = []; this.cur = -1; this.serverSearch = false;
      this.wantLine = this.hashLine();
      this.build();
      this.reset();
      this.open();
    }

    reset() {
      if (this.es) this.es.close();
      this.es = null;
      this.lines = []; this.kinds = []; this.parent = []; this.stack = [];
      // What a terminal shows for the lines: rows, redrawn in place by
      // cursor moves and erases (term.js). A line that only redraws rows
      // above has no row of its own, and is not shown.
      this.screen = this.newScreen(); this.rowless = 0;
      this.partialText = ''; this.partialRows = 0;
      this.heights = new Map(); this.preN = 0; this.pinned = -1; // see rowsOf
      this.marks = null; // [line index, offset where it starts], at log events
      this.closed = new Set(); this.visible = null; this.target = -1;
      // Groups the reader closed stay closed across reloads (this tab).
      try { this.savedClosed = new Set(JSON.parse(sessionStorage.getItem(this.groupsKey()) || '[]')); } catch { this.savedClosed = new Set(); }
      this.first = 1; this.startOffset = 0; this.endOffset = null;
      this.detached = false; this.finished = false; this.loading = false;
      // Line times: [line, ms] pairs, each holding until the next, known
      // for lines tFrom..tTo.
      this.tRecs = []; this.tFrom = 0; this.tTo = -1; this.tGen = (this.tGen || 0) + 1;
    }

    open() {
      if (this.wantLine && this.total - this.wantLine > TAIL) this.jumpTo(this.wantLine);
      else this.connect(this.total > TAIL && !this.wantLine ? `?tail=${TAIL}` : this.wantLine ? `?line=${Math.max(1, this.wantLine - 1000)}` : '');
    }

    build() {
      const r = this.root;
      r.querySelector('.log-static').remove();
      this.view = document.createElement('div');
      this.view.className = 'log-view';
      this.view.tabIndex = 0;
      this.view.setAttribute('role', 'log');
      this.view.setAttribute('aria-label', 'Log lines');
      this.view.dataset.testid = 'log-view';
      this.sizer = document.createElement('div');
      this.rows = document.createElement('div');
      this.rows.className = 'log-rows';
      this.jump = document.createElement('button');
      this.jump.className = 'btn small jump';
      this.jump.textContent = 'Jump to latest ↓';
      this.jump.hidden = true;
      this.jump.dataset.testid = 'jump';
      this.earlier = document.createElement('div');
      this.earlier.className = 'log-window';
      this.earlier.dataset.testid = 'log-window';
      this.earlier.hidden = true;
      this.view.append(this.sizer, this.rows);
      const wrap = document.createElement('div');
      wrap.className = 'log-body';
      wrap.append(this.earlier, this.view, this.jump);
      r.querySelector('.log-bar').after(wrap);
      this.foot = r.querySelector('[data-testid=log-size]');
      for (const el of r.querySelectorAll('.log-bar [hidden]')) el.hidden = false;
      this.search = r.querySelector('input[type=search]');
      this.countEl = r.querySelector('.count');
      this.followBox = r.querySelector('[data-opt=follow]');
      this.wrapBox = r.querySelector('[data-opt=wrap]');
      this.timesBox = r.querySelector('[data-opt=times]');
      this.cmdsBox = r.querySelector('[data-opt=commands]');
      this.links = [...r.querySelectorAll('.log-bar a')].map((a) => [a, a.href]);
      // Wrap and times are the reader's habits: kept across pages.
      const pref = (k) => { try { return localStorage.getItem('shiplog.' + k) === '1'; } catch { return false; } };
      const keep = (k, on) => { try { localStorage.setItem('shiplog.' + k, on ? '1' : '0'); } catch { /* private mode */ } };
      this.wrapBox.checked = pref('wrap');
      this.timesBox.checked = pref('times');
      this.cmdsBox.checked = pref('commands');
      this.setWrap(); this.setTimes();

      let debounce = 0;
      this.search.addEventListener('input', () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => { debounce = 0; this.find(this.search.value); }, 200);
      });
      this.search.addEventListener('keydown', (e) => {
        if (e.key !== 'Enter') return;
        e.preventDefault();
        // Enter before the pause ends searches what was typed, at once.
        if (debounce) { clearTimeout(debounce); debounce = 0; this.find(this.search.value); } else this.step(e.shiftKey ? -1 : 1);
      });
      this.regexBtn = r.querySelector('[data-act=regex]');
      this.caseBtn = r.querySelector('[data-act=case]');
      for (const b of [this.regexBtn, this.caseBtn]) {
        b.addEventListener('click', () => {
          b.setAttribute('aria-pressed', String(b.getAttribute('aria-pressed') !== 'true'));
          if (this.search.value) this.find(this.search.value);
        });
      }
      r.querySelector('[data-act=next]').addEventListener('click', () => this.step(1));
      r.querySelector('[data-act=prev]').addEventListener('click', () => this.step(-1));
      this.followBox.addEventListener('change', () => this.followBox.checked ? this.toLatest() : this.setFollow(false));
      this.wrapBox.addEventListener('change', () => { keep('wrap', this.wrapBox.checked); this.setWrap(); });
      this.timesBox.addEventListener('change', () => { keep('times', this.timesBox.checked); this.setTimes(); });
      this.cmdsBox.addEventListener('change', () => {
        keep('commands', this.cmdsBox.checked);
        // The line at the top stays where it is.
        const at = this.indexAt(this.rowAtY(this.view.scrollTop));
        this.rebuildVisible(); this.resize();
        if (!this.follow && at !== undefined) this.view.scrollTop = this.yOf(this.rowOf(at));
        this.schedule();
      });
      this.jump.addEventListener('click', () => this.toLatest());
      this.earlier.addEventListener('click', (e) => { if (e.target.closest('button')) this.loadEarlier(); });
      this.view.addEventListener('scroll', () => this.onScroll(), { passive: true });
      // The user's own move up stops following at once, even while lines
      // keep pinning the view to the end.
      this.view.addEventListener('wheel', (e) => { if (e.deltaY < 0 && this.follow) this.setFollow(false); }, { passive: true });
      this.view.addEventListener('keydown', (e) => { if (['ArrowUp', 'PageUp', 'Home'].includes(e.key) && this.follow) this.setFollow(false); });
      this.rows.addEventListener('click', (e) => this.onClick(e));
      window.addEventListener('hashchange', () => { const n = this.hashLine(); if (n) this.goToLine(n); });
      window.addEventListener('resize', () => this.schedule());
      // The header above the log grows and shrinks (progress, errors,
      // annotations): the log's height follows, and so must its rows.
      if (window.ResizeObserver) new ResizeObserver(() => this.schedule()).observe(this.view);
      document.addEventListener('keydown', (e) => {
        if (e.key === '/' && document.activeElement !== this.search && !/INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) {
          e.preventDefault(); this.search.focus();
        }
      });
    }

    setWrap() {
      this.root.classList.toggle('wrap', this.wrapBox.checked);
      this.heights = new Map(); this.preN = 0; this.cols = 0;
      if (this.lines) this.resize();
      this.schedule();
    }

    // ---- row heights -------------------------------------------------
    // Rows are H high, or with wrap on as many times H as their text takes
    // (a row breaks at any character, as a terminal wraps): estimated from
    // the text's length and the columns that fit, then measured once
    // drawn (wide characters, labels). pre[r] is the height of the rows
    // before visible row r, in units of H, valid for r <= preN.

    // rowsOf is how many H-high lines visible row r takes.
    rowsOf(r) {
      if (!this.wrapBox.checked || !this.cols) return 1;
      const n = this.count();
      if (r >= n) { // a row of the unfinished line
        const sr = this.screen.rows[this.screen.rows.length - this.partialRows + (r - n)];
        return sr ? Math.max(1, Math.ceil(sr.t.length / this.cols)) : 1;
      }
      const i = this.indexAt(r);
      const known = this.heights.get(i);
      if (known !== undefined) return known;
      let len;
      const k = this.kinds[i];
      if (k === K_PLAIN || k === K_MARK) {
        const row = this.screen.rows[this.screen.rowOfLine(this.first + i)];
        len = row ? row.t.length : 0;
      } else len = this.lines[i].length;
      return Math.max(1, Math.ceil(len / this.cols));
    }

    // yOf is the top of visible row r, in px.
    yOf(r) {
      if (!this.wrapBox.checked || !this.cols) return r * H;
      this.ensurePre(r);
      return this.pre[r] * H;
    }

    totalH() { return this.yOf(this.count() + this.partialRows); }

    // rowAtY is the visible row at y px.
    rowAtY(y) {
      const total = this.count() + this.partialRows;
      if (!this.wrapBox.checked || !this.cols) return Math.max(0, Math.min(Math.floor(y / H), total));
      this.ensurePre(total);
      const u = y / H;
      let lo = 0, hi = total;
      while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.pre[mid] <= u) lo = mid; else hi = mid - 1; }
      return lo;
    }

    ensurePre(r) {
      if (this.preN >= r) return;
      if (!this.pre || this.pre.length < r + 1) {
        const grown = new Float64Array(Math.max(r + 1, 2 * (this.pre ? this.pre.length : 1024)));
        if (this.pre) grown.set(this.pre.subarray(0, this.preN + 1));
        this.pre = grown;
      }
      if (this.preN === 0) this.pre[0] = 0;
      for (let k = this.preN; k < r; k++) this.pre[k + 1] = this.pre[k] + this.rowsOf(k);
      this.preN = r;
    }

    // measure corrects the heights of the rows drawn, [start, end), from
    // what the browser made of them, and keeps a permalink's row in place.
    measure(start, end) {
      const t = this.rows.querySelector('.l:not(.partial) .t');
      if (t) {
        const cols = Math.max(1, Math.floor(t.clientWidth / this.chWidth()));
        if (cols !== this.cols) { this.cols = cols; this.heights.clear(); this.preN = 0; this.resize(); this.schedule(); return; }
      }
      let changed = -1;
      for (const el of this.rows.children) {
        if (el.classList.contains('partial')) continue;
        const i = parseInt(el.dataset.i, 10), r = this.rowOf(i);
        if (r < start || r >= end) continue;
        const got = Math.max(1, Math.round(el.offsetHeight / H));
        if (got !== this.rowsOf(r)) {
          this.heights.set(i, got);
          if (changed < 0 || r < changed) changed = r;
        }
      }
      if (changed >= 0) {
        this.preN = Math.min(this.preN, changed);
        this.resize();
        if (this.pinned >= 0) {
          this.view.scrollTop = Math.max(0, this.yOf(this.rowOf(this.pinned)) - this.view.clientHeight / 3);
          this.lastTop = this.view.scrollTop;
        }
        this.schedule();
      }
    }

    chWidth() {
      if (!this.ch) {
        const probe = document.createElement('span');
        probe.className = 'probe';
        probe.textContent = '0'.repeat(100);
        this.rows.append(probe);
        this.ch = probe.getBoundingClientRect().width / 100 || 8;
        probe.remove();
      }
      return this.ch;
    }

    // setTimes shows or hides each line's arrival time; the raw log links
    // then carry the times too.
    setTimes() {
      const on = this.timesBox.checked;
      this.root.classList.toggle('times', on);
      for (const [a, href] of this.links) {
        const u = new URL(href);
        if (on) u.searchParams.set('timestamps', '1');
        a.href = u.href;
      }
      this.schedule();
    }

    // timeOf is when line num arrived (ms), or null when not known yet.
    timeOf(num) {
      if (num < this.tFrom || num > this.tTo) return null;
      const t = this.tRecs;
      let lo = 0, hi = t.length - 1, at = null;
      while (lo <= hi) { const mid = (lo + hi) >> 1; if (t[mid][0] <= num) { at = t[mid][1]; lo = mid + 1; } else hi = mid - 1; }
      return at;
    }

    // timeTitle says when a line came in full, and how far into the run.
    timeTitle(at) {
      const started = Date.parse(this.root.dataset.started || '');
      const into = Number.isNaN(started) ? '' : ` · ${((at - started) / 1000).toFixed(3)} s into the run`;
      return new Date(at).toLocaleString() + into;
    }

    // wantTimes fetches the times of lines a..b (and some around them) when
    // they are not known; one request at a time, ten a second at most.
    wantTimes(a, b) {
      if ((a >= this.tFrom && b <= this.tTo) || this.tBusy) return;
      this.tBusy = true;
      const gen = this.tGen;
      const last = this.first - 1 + this.lines.length;
      const from = Math.max(1, a - 2000), to = Math.min(last, b + 2000);
      fetch(`${this.timesURL}?from=${from}&to=${to}`)
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`${r.status}`))))
        .then((j) => {
          if (gen !== this.tGen) return;
          // Every line we held when asking had its time written before it.
          this.tRecs = j.times; this.tFrom = from; this.tTo = to;
          this.schedule();
        })
        .catch(() => {})
        .finally(() => setTimeout(() => { this.tBusy = false; if (gen === this.tGen) this.schedule(); }, 100));
    }

    // hashLine is the line a permalink names (#L12, or #L10-L20, a range
    // whose lines are marked); 0 for none.
    hashLine() {
      const m = /^#L(\d+)(?:-L(\d+))?$/.exec(location.hash);
      if (!m) return 0;
      const a = parseInt(m[1], 10), b = m[2] ? parseInt(m[2], 10) : a;
      this.range = b !== a ? [Math.min(a, b), Math.max(a, b)] : null;
      return Math.min(a, b);
    }

    // connect follows the live stream, from where the window ends.
    connect(query) {
      let url = this.endOffset === null ? this.url + (query || '') : `${this.url}?after=${this.endOffset}`;
      url += (url.includes('?') ? '&' : '?') + 'partial=1'; // the unfinished line too
      const es = new EventSource(url);
      this.es = es;
      this.detached = false;
      es.addEventListener('window', (e) => {
        if (this.endOffset !== null) return; // a reconnect: we know where we are
        const w = JSON.parse(e.data);
        this.first = w.line; this.startOffset = w.offset; this.endOffset = w.offset;
        this.marks = [[0, w.offset]];
        this.schedule();
      });
      es.addEventListener('log', (e) => {
        this.endOffset = parseInt(e.lastEventId, 10);
        this.partialText = ''; // the lines hold it now; a newer one follows
        this.append(e.data.split('\n').map(decode));
        if (this.marks) this.marks.push([this.lines.length, this.endOffset]); // where the next line starts
        this.bound();
      });
      // The unfinished last line (a prompt, a progress bar): shown in
      // place after the lines, until the next lines replace it.
      es.addEventListener('partial', (e) => { this.setPartial(decode(e.data)); });
      // While the connection is down the page says so, until the stream
      // answers again.
      const up = () => { if (this.retrying) { this.retrying = false; this.retries = 0; this.schedule(); } };
      es.addEventListener('open', up);
      es.addEventListener('shutdown', () => { this.retrying = true; this.schedule(); });
      es.addEventListener('status', (e) => { this.takeRun(e.data); statusChanged(); });
      es.addEventListener('end', (e) => {
        this.takeRun(e.data);
        es.close();
        this.finished = true;
        this.root.dataset.finished = 'true';
        statusChanged();
        this.schedule();
      });
      es.onerror = () => {
        if (this.finished || this.es !== es) return;
        if (!this.retrying) { this.retrying = true; this.schedule(); }
        // EventSource retries by itself with Last-Event-ID. If it stopped
        // (an HTTP error, or 204: we have the whole log of a finished run),
        // ask the run how it is before starting again from our offset.
        if (es.readyState !== EventSource.CLOSED) return;
        fetch(this.url.replace(/\/events$/, ''), { headers: { Accept: 'application/json' } })
          .then((r) => (r.ok ? r.json() : null))
          .then((run) => {
            if (this.es !== es) return;
            if (run && !['queued', 'running'].includes(run.state)) {
              this.finished = true;
              this.root.dataset.finished = 'true';
              statusChanged();
              this.schedule();
            } else this.retryLater(es);
          })
          .catch(() => this.retryLater(es));
      };
    }

    // takeRun reads what the log view uses of the run's JSON: its groups'
    // durations, by their ::group:: line.
    takeRun(data) {
      try {
        const run = JSON.parse(data);
        this.groupInfo = new Map((run.groups || []).map((g) => [g.line, g]));
        this.schedule();
      } catch { /* not the run */ }
    }

    // retryLater connects again after a wait that grows with each failure
    // in a row (2 s, 4 s, … 30 s, with jitter), never giving up.
    retryLater(es) {
      const wait = Math.min(30000, 2000 * 2 ** Math.min(this.retries || 0, 4)) * (0.8 + 0.4 * Math.random());
      this.retries = (this.retries || 0) + 1;
      setTimeout(() => { if (this.es === es) this.connect(); }, wait);
    }

    // jumpTo shows the log around line n, away from the live end.
    async jumpTo(n) {
      this.reset();
      this.detached = true;
      this.setFollow(false);
      const from = Math.max(1, n - 200);
      this.wantLine = n;
      this.loading = true;
      try {
        const r = await fetch(`${this.raw}?line=${from}`);
        if (!r.ok) throw new Error(`${r.status}`);
        this.first = from;
        this.startOffset = parseInt(r.headers.get('X-Log-Start'), 10);
        this.endOffset = parseInt(r.headers.get('X-Log-Offset'), 10);
        this.finished = r.headers.get('X-Log-Complete') === 'true';
        this.loading = false;
        this.append(splitLines(new Uint8Array(await r.arrayBuffer())));
      } catch (err) {
        this.loading = false;
        this.foot.textContent = `Could not load line ${n}: ${err.message}`;
      }
    }

    goToLine(n) {
      const i = n - this.first;
      if (i >= 0 && i < this.lines.length) { this.wantLine = n; this.seekWanted(); } else this.jumpTo(n);
    }

    toLatest() {
      if (this.detached) { this.reset(); this.setFollow(true); this.connect(this.total > TAIL ? `?tail=${TAIL}` : ''); }
      else this.setFollow(true);
    }

    // loadEarlier prepends the lines before the window, by byte range.
    async loadEarlier() {
      if (this.loading || this.startOffset <= 0) return;
      this.loading = true;
      try {
        let size = CHUNK, buf, start;
        for (;;) {
          const from = Math.max(0, this.startOffset - size);
          const r = await fetch(this.raw, { headers: { Range: `bytes=${from}-${this.startOffset - 1}` } });
          if (!r.ok) throw new Error(`${r.status}`);
          buf = new Uint8Array(await r.arrayBuffer());
          start = from;
          if (from === 0) break;
          const i = buf.indexOf(10);
          if (i >= 0) { buf = buf.subarray(i + 1); start = from + i + 1; break; }
          size *= 4; // one line longer than the chunk
        }
        this.prepend(splitLines(buf), start);
      } catch (err) {
        this.foot.textContent = `Could not load earlier lines: ${err.message}`;
      } finally {
        this.loading = false;
      }
    }

    // loadLater appends the next chunk of a window shown away from the end,
    // and follows the live stream once it reaches it.
    async loadLater() {
      if (this.loading || !this.detached || this.finished) return;
      this.loading = true;
      try {
        const r = await fetch(`${this.raw}?after=${this.endOffset}`);
        if (!r.ok) throw new Error(`${r.status}`);
        const next = parseInt(r.headers.get('X-Log-Offset'), 10);
        const complete = r.headers.get('X-Log-Complete') === 'true';
        const lines = splitLines(new Uint8Array(await r.arrayBuffer()));
        this.endOffset = next;
        this.loading = false;
        if (lines.length) this.append(lines);
        if (complete) { this.finished = true; this.schedule(); }
        else if (!lines.length) this.connect(); // at the live end
      } catch (err) {
        this.loading = false;
        this.foot.textContent = `Could not load more lines: ${err.message}`;
      }
    }

    classifyFrom(i) {
      if (i === 0) { this.stopTok = ''; this.nCmds = 0; this.gLines = []; }
      for (; i < this.lines.length; i++) {
        const t = this.lines[i];
        let k;
        if (this.stopTok) {
          // ::stop-commands::TOKEN: lines are plain text until ::TOKEN::.
          k = t.replace(/\r$/, '') === `::${this.stopTok}::` ? K_CMD : K_PLAIN;
          if (k === K_CMD) this.stopTok = '';
        } else {
          k = classify(t);
          if (k === K_CMD) { const c = command(t); if (c.name === 'stop-commands' && c.value) this.stopTok = c.value.replace(/\r$/, ''); }
        }
        if (k === K_CMD || k === K_END) this.nCmds++;
        else for (const g of this.stack) this.gLines[g]++; // a line of each open group
        this.kinds[i] = k;
        this.parent[i] = this.stack.length ? this.stack[this.stack.length - 1] : -1;
        if (k === K_GROUP) {
          this.stack.push(i);
          this.gLines[i] = 0;
          if (this.savedClosed.has(this.first + i)) this.closed.add(i);
        }
        else if (k === K_END && this.stack.length) this.stack.pop();
      }
    }

    // newScreen is an empty screen the size of the job's terminal (tty:
    // true), which bounds the cursor's moves as the job's terminal did.
    newScreen() {
      const d = this.root.dataset;
      return new window.ShiplogTerm.Screen({ height: parseInt(d.ttyRows || '0', 10), cols: parseInt(d.ttyCols || '0', 10) });
    }

    // reread reads the lines held again from the first, after the window
    // changed at its start: their kinds and groups, and a new screen.
    reread() {
      this.kinds = []; this.parent = []; this.stack = [];
      this.classifyFrom(0);
      this.screen = this.newScreen(); this.rowless = 0;
      this.feed(0);
      if (this.partialText) this.setPartial(this.partialText);
    }

    // feed gives the screen lines from index i on, in order: output to the
    // terminal, workflow commands as rows of their own.
    feed(i) {
      const sc = this.screen;
      for (; i < this.lines.length; i++) {
        const k = this.kinds[i], n = this.first + i;
        if (k === K_PLAIN || k === K_MARK) {
          sc.line(n, this.lines[i]);
          if (!this.ownsRow(i)) {
            // Not shown: its groups count the rows they show.
            this.rowless++;
            for (let p = this.parent[i]; p >= 0; p = this.parent[p]) this.gLines[p]--;
          }
        } else sc.block(n, k, this.lines[i]);
      }
      this.partialRows = 0;
    }

    // ownsRow says whether line i made a row of its own on the screen.
    ownsRow(i) {
      const r = this.screen.rowOfLine(this.first + i);
      return r >= 0 && this.screen.rows[r].n === this.first + i;
    }

    setPartial(text) {
      this.partialText = text;
      const sc = this.screen;
      const before = sc.rows.length;
      sc.partial(this.first + this.lines.length, text); // takes the last one back first
      this.partialRows = text ? Math.max(0, sc.rows.length - (sc.undo ? sc.undo.len : before)) : 0;
      this.preN = Math.min(this.preN, Math.max(0, this.count() - 100));
      this.resize();
      this.schedule();
    }

    append(batch) {
      const from = this.lines.length;
      for (const t of batch) this.lines.push(t);
      this.classifyFrom(from);
      this.feed(from);
      for (let i = from; i < this.lines.length; i++) {
        if (this.query && !this.serverSearch && this.matchLine(i)) this.addMatch(this.first + i);
      }
      if (this.visible) { for (let i = from; i < this.lines.length; i++) if (!this.hidden(i)) this.visible.push(i); }
      else if (this.needVisible()) this.rebuildVisible();
      // The new lines may have redrawn the rows within the screen's reach.
      this.preN = Math.min(this.preN, Math.max(0, this.rowOf(from) - 100));
      this.resize();
      this.seekWanted();
      this.schedule();
    }

    prepend(batch, start) {
      const n = batch.length;
      if (!n) { this.startOffset = start; return; }
      const top = this.view.scrollTop, before = this.totalH();
      this.lines = batch.concat(this.lines);
      this.first -= n;
      this.startOffset = start;
      if (this.marks) this.marks = [[0, start], ...this.marks.map(([i, off]) => [i + n, off])];
      const closed = this.closed;
      this.closed = new Set([...closed].map((i) => i + n));
      this.reread();
      if (this.target >= 0) this.target += n;
      if (this.closed.size) this.rebuildVisible();
      if (this.query && !this.serverSearch) {
        const added = [];
        for (let i = 0; i < n; i++) if (this.matchLine(i)) added.push(this.first + i);
        this.matchList = added.concat(this.matchList);
        for (const num of added) this.matchNums.add(num);
        if (this.cur >= 0) this.cur += added.length;
        this.showCount();
      }
      this.resize();
      // What the user was looking at stays where it was.
      this.heights.clear(); this.preN = 0;
      this.view.scrollTop = top + this.totalH() - before;
      this.seekWanted();
      this.schedule();
    }

    // bound keeps a live view to HELD lines: following, the oldest go, at
    // the start of a log event (whose offset the stream said), so that
    // scrolling back fetches them again by range from exactly there.
    bound() {
      if (this.detached || !this.follow || this.lines.length <= HELD || !this.marks) return;
      let cut = null;
      for (const m of this.marks) if (m[0] > 0 && m[0] <= this.lines.length - KEEP) cut = m;
      if (!cut) return;
      const [k, off] = cut;
      this.lines = this.lines.slice(k);
      this.first += k;
      this.startOffset = off;
      this.marks = this.marks.filter((m) => m[0] >= k).map(([i, o]) => [i - k, o]);
      this.closed = new Set([...this.closed].filter((i) => i >= k).map((i) => i - k));
      if (this.target >= 0) this.target = this.target >= k ? this.target - k : -1;
      this.reread();
      if (this.matchNums) {
        this.matchList = this.matchList.filter((num) => num >= this.first);
        this.matchNums = new Set(this.matchList);
        this.cur = Math.min(this.cur, this.matchList.length - 1);
        this.showCount();
      }
      this.heights.clear(); this.preN = 0;
      this.rebuildVisible();
      this.resize();
      this.schedule();
    }

    // A following view stays pinned to the end as it grows.
    resize() {
      this.sizer.style.height = `${this.totalH() + 8}px`;
      if (this.follow) this.view.scrollTop = this.view.scrollHeight;
    }

    // Command lines are hidden unless the reader asks for them, as
    // GitHub hides them; so are the lines of closed groups.
    hidden(i) {
      if (!this.cmdsBox.checked && (this.kinds[i] === K_CMD || this.kinds[i] === K_END)) return true;
      if ((this.kinds[i] === K_PLAIN || this.kinds[i] === K_MARK) && !this.ownsRow(i)) return true;
      for (let p = this.kinds[i] === K_END ? i : this.parent[i]; p >= 0; p = this.parent[p]) if (this.closed.has(p)) return true;
      return false;
    }

    needVisible() { return this.closed.size > 0 || this.rowless > 0 || (!this.cmdsBox.checked && this.nCmds > 0); }

    rebuildVisible() {
      this.preN = 0;
      if (!this.needVisible()) { this.visible = null; return; }
      const v = [];
      for (let j = 0; j < this.lines.length; j++) if (!this.hidden(j)) v.push(j);
      this.visible = v;
    }

    groupsKey() { return `shiplog.closed.${this.root.dataset.run}`; }

    toggleGroup(i) {
      if (this.closed.has(i)) this.closed.delete(i); else this.closed.add(i);
      const num = this.first + i;
      if (this.closed.has(i)) this.savedClosed.add(num); else this.savedClosed.delete(num);
      try { sessionStorage.setItem(this.groupsKey(), JSON.stringify([...this.savedClosed])); } catch { /* private mode */ }
      this.rebuildVisible();
      this.resize();
      this.schedule();
    }

    count() { return this.visible ? this.visible.length : this.lines.length; }
    indexAt(row) { return this.visible ? this.visible[row] : row; }
    rowOf(i) {
      if (!this.visible) return i;
      let lo = 0, hi = this.visible.length - 1;
      while (lo <= hi) { const mid = (lo + hi) >> 1; if (this.visible[mid] < i) lo = mid + 1; else hi = mid - 1; }
      return lo;
    }

    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.render(); });
    }

    render() {
      const n = this.count();
      this.resize();
      const top = this.view.scrollTop, h = this.view.clientHeight || 600;
      const start = Math.max(0, this.rowAtY(top) - OVERSCAN);
      const end = Math.min(n, this.rowAtY(top + h) + 1 + OVERSCAN);
      const parts = [];
      const cur = this.cur >= 0 ? this.matchList[this.cur] : -1;
      const times = this.timesBox.checked;
      if (times && end > start) this.wantTimes(this.first + this.indexAt(start), this.first + this.indexAt(end - 1));
      for (let r = start; r < end; r++) {
        const i = this.indexAt(r);
        const k = this.kinds[i];
        const num = this.first + i;
        let cls = 'l';
        if (KIND_CLASS[k]) cls += ' ' + KIND_CLASS[k];
        if (k === K_GROUP && this.closed.has(i)) cls += ' closed';
        if (i === this.target) cls += ' target';
        else if (this.range && num >= this.range[0] && num <= this.range[1]) cls += ' range';
        if (this.matchNums && this.matchNums.has(num)) cls += num === cur ? ' match current' : ' match';
        let t = this.lines[i];
        let label = '';
        if (!this.cmdsBox.checked && k >= K_GROUP && k !== K_MARK && k !== K_PLAIN) {
          // What the command says, not how: a group's title, an
          // annotation's level, title and message.
          const c = command(t);
          if (c) {
            // A row is one line high: a message's own line breaks show as ↵.
            t = unData(c.value).replace(/\r\n|\n|\r/g, ' ↵ ');
            if (k === K_ERR || k === K_WARN || k === K_NOTE) {
              const title = prop(c.props, 'title');
              label = `<span class="lvl">${c.name}</span>${title ? `<b>${shown(title)}:</b> ` : ''}`;
            }
          }
        }
        let ts = '';
        if (times) {
          const at = this.timeOf(num);
          ts = `<span class="ts">${at === null ? '' : `<time datetime="${new Date(at).toISOString()}" title="${this.timeTitle(at)}">${fmtClock(at)}</time>`}</span>`;
        }
        let body;
        if (k === K_PLAIN || k === K_MARK) {
          // What the terminal shows on the line's row, as it is now.
          const row = this.screen.rows[this.screen.rowOfLine(num)];
          const hits = row && this.matchNums && this.matchNums.has(num) ? this.hits(window.ShiplogTerm.rowText(row)) : null;
          body = row ? rowHTML(row, hits) : '';
        } else {
          t = carriage(t);
          body = ansi(t, this.matchNums && this.matchNums.has(num) ? this.hits(strip(t)) : null);
        }
        let text = `<span class="t">${label}${body}</span>`;
        if (k === K_GROUP) {
          // A group's header is a button (keyboard and screen readers), with
          // how many lines the group holds so far.
          const n = this.gLines[i] || 0;
          // and how long it took, from the run's record (its groups).
          const g = this.groupInfo && this.groupInfo.get(num);
          const took = g && g.duration_ms != null ? ` · ${fmtDur(g.duration_ms)}` : '';
          text = `<button type="button" class="gt" aria-expanded="${!this.closed.has(i)}">${text}<span class="gmeta">${n.toLocaleString()} line${n === 1 ? '' : 's'}${took}</span></button>`;
        }
        parts.push([`L${num}`, `<div class="${cls}" id="L${num}" data-i="${i}"><a class="n" href="#L${num}" tabindex="-1">${num}</a>${ts}${text}</div>`]);
      }
      // The rows of the unfinished line, after the lines.
      if (this.partialRows && end === n) {
        const sc = this.screen, num = this.first + this.lines.length;
        for (let r = sc.rows.length - this.partialRows; r < sc.rows.length; r++) {
          parts.push([`P${r}`, `<div class="l partial" data-testid="partial-line"><a class="n" tabindex="-1">${num}</a>${this.timesBox.checked ? '<span class="ts"></span>' : ''}<span class="t">${rowHTML(sc.rows[r], null)}</span></div>`]);
        }
      }
      this.rows.style.transform = `translateY(${this.yOf(start)}px)`;
      this.patch(parts);
      if (this.wrapBox.checked) this.measure(start, end);
      const last = this.first - 1 + this.lines.length;
      // The gutter fits the longest line number shown (8 digits in a 1 GB log).
      const digits = Math.max(5, String(last).length);
      if (digits !== this.digits) { this.digits = digits; this.root.style.setProperty('--digits', digits); }
      const windowed = this.first > 1 || this.detached;
      this.earlier.hidden = !windowed;
      if (windowed) {
        this.earlier.innerHTML = this.first > 1
          ? `Showing lines ${this.first.toLocaleString()}–${last.toLocaleString()}. ${(this.first - 1).toLocaleString()} earlier lines: <button class="link" type="button" data-testid="load-earlier">${this.loading ? 'loading…' : 'load earlier'}</button> (or scroll up)`
          : `Showing lines 1–${last.toLocaleString()}.`;
      }
      this.jump.textContent = this.detached ? 'Jump to the end ↓' : 'Jump to latest ↓';
      this.foot.textContent = `${last.toLocaleString()} line${last === 1 ? '' : 's'}${this.finished ? '' : this.retrying ? ' · connection lost, reconnecting…' : this.detached ? '' : ' · live'}`;
    }

    // patch makes the rows' elements those of parts ([key, html] in order),
    // keeping every element whose html has not changed: a selection (and
    // the focus) inside rows survives new lines, while following or not.
    patch(parts) {
      const old = this.els || new Map(), els = new Map();
      for (const [key, html] of parts) {
        let el = old.get(key);
        if (!el || el.shiplogHTML !== html) {
          const tpl = document.createElement('template');
          tpl.innerHTML = html;
          el = tpl.content.firstElementChild;
          el.shiplogHTML = html;
          // Colours beyond the palette go through the CSSOM: the Content-
          // Security-Policy refuses style attributes in markup.
          for (const c of el.querySelectorAll('[data-c]')) c.style.cssText = c.dataset.c;
        }
        els.set(key, el);
      }
      const focused = this.rows.contains(document.activeElement) ? document.activeElement.closest('.l')?.dataset.i : undefined;
      for (const [key, el] of old) if (els.get(key) !== el) el.remove();
      let at = this.rows.firstElementChild;
      for (const el of els.values()) {
        if (at === el) { at = at.nextElementSibling; continue; }
        this.rows.insertBefore(el, at);
      }
      while (at) { const next = at.nextElementSibling; at.remove(); at = next; }
      this.els = els;
      // A focused group header redrawn keeps the focus.
      if (focused !== undefined && !this.rows.contains(document.activeElement)) this.rows.querySelector(`[data-i="${focused}"] .gt`)?.focus({ preventScroll: true });
    }

    // Following means being at the end: scrolling away stops it, scrolling
    // back to the end (or "Jump to latest") resumes it.
    onScroll() {
      const top = this.view.scrollTop;
      const atEnd = top + this.view.clientHeight >= this.view.scrollHeight - 2 * H;
      if (top < (this.lastTop || 0) - 1) this.pinned = -1; // the reader moved: a permalink's place is theirs now
      // Only a move up stops following: the view changing size under the
      // reader (the header above growing) fires scroll events too.
      if (!this.detached && atEnd && !this.follow) this.setFollow(true);
      else if (!this.detached && !atEnd && this.follow && top < (this.lastTop || 0) - 1) this.setFollow(false);
      this.lastTop = top;
      if (this.view.scrollTop < 40 * H && this.startOffset > 0) this.loadEarlier();
      if (this.detached && this.view.scrollTop + this.view.clientHeight >= this.view.scrollHeight - 40 * H) this.loadLater();
      this.schedule();
    }

    setFollow(on) {
      this.follow = on && !this.detached;
      this.followBox.checked = this.follow;
      this.jump.hidden = this.follow;
      this.schedule();
    }

    scrollToIndex(i) {
      this.setFollow(false);
      this.view.scrollTop = Math.max(0, this.yOf(this.rowOf(i)) - this.view.clientHeight / 3);
      this.lastTop = this.view.scrollTop; // not the reader's move
      this.pinned = i; // kept there while rows above find their heights (wrap)
      this.schedule();
    }

    seekWanted() {
      if (!this.wantLine) return;
      const i = this.wantLine - this.first;
      if (i < 0 || i >= this.lines.length) return;
      this.wantLine = 0;
      // A line inside a closed group opens it.
      for (let p = this.parent[i]; p >= 0; p = this.parent[p]) if (this.closed.has(p)) this.toggleGroup(p);
      this.target = i;
      this.scrollToIndex(i);
    }

    onClick(e) {
      const row = e.target.closest('.l');
      if (!row) return;
      const i = parseInt(row.dataset.i, 10);
      if (e.target.classList.contains('n')) {
        e.preventDefault();
        const num = this.first + i;
        // Shift-click marks the lines from the last one clicked, as GitHub does.
        if (e.shiftKey && this.target >= 0 && this.target !== i) {
          const a = Math.min(this.first + this.target, num), b = Math.max(this.first + this.target, num);
          history.replaceState(null, '', `#L${a}-L${b}`);
          this.range = [a, b];
          getSelection().removeAllRanges();
        } else {
          history.replaceState(null, '', `#L${num}`);
          this.target = i;
          this.range = null;
        }
        this.setFollow(false);
        this.schedule();
      } else if (this.kinds[i] === K_GROUP && !getSelection().toString()) {
        this.toggleGroup(i);
      }
    }

    // matchLine says whether line i's text, as shown, holds the query.
    matchLine(i) {
      if (!this.queryRE) return false;
      const k = this.kinds[i];
      let text;
      if (k === K_PLAIN || k === K_MARK) {
        if (!this.ownsRow(i)) return false;
        text = window.ShiplogTerm.rowText(this.screen.rows[this.screen.rowOfLine(this.first + i)]);
      } else text = strip(carriage(this.lines[i]));
      this.queryRE.lastIndex = 0;
      return this.queryRE.test(text);
    }

    // hits returns where the query is in line's text, as [from, to) pairs.
    hits(text) {
      if (!this.queryRE) return null; // a regular expression: the line is marked
      const out = [];
      this.queryRE.lastIndex = 0;
      for (let m; (m = this.queryRE.exec(text)) && out.length < 100;) out.push([m.index, m.index + m[0].length]);
      return out.length ? out : null;
    }

    addMatch(num) { this.matchNums.add(num); this.matchList.push(num); }

    showCount() {
      const n = this.matchList.length;
      const where = this.serverSearch ? ' in the whole log' : '';
      this.countEl.textContent = !this.query ? '' : n ? `${this.cur + 1} of ${n}${this.truncated ? '+' : ''}${where}` : 'no matches';
    }

    // find searches the loaded lines at once, and the whole log on the
    // server when only part of it is loaded.
    // A regular expression is matched by the server alone (RE2: linear
    // time, a size cap and a time budget), which says which lines match;
    // the browser's own engine could hang the tab on a pathological one.
    async find(q) {
      // Every search, local or not, outdates those still waiting for the
      // server: their answers must not add to this one's matches.
      const token = (this.searchToken = {});
      this.query = q;
      const regex = this.regexBtn.getAttribute('aria-pressed') === 'true';
      const matchCase = this.caseBtn.getAttribute('aria-pressed') === 'true';
      // The i flag keeps offsets (lower-casing can change a string's length).
      this.queryRE = regex ? null : new RegExp(q.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), matchCase ? 'g' : 'gi');
      this.matchList = []; this.matchNums = this.query ? new Set() : null; this.cur = -1; this.truncated = false;
      this.serverSearch = !!this.query && (regex || this.first > 1 || this.detached);
      if (this.serverSearch) {
        const r = await fetch(`${this.searchURL}?q=${encodeURIComponent(regex ? 're:' + q : q)}${matchCase ? '&case=1' : ''}&limit=1000`);
        if (token !== this.searchToken) return; // a newer search started
        if (!r.ok) {
          let msg = 'search failed';
          try { msg = (await r.json()).error || msg; } catch { /* not JSON */ }
          if (token !== this.searchToken) return;
          this.countEl.textContent = msg.replace(/^q: /, '');
          this.schedule();
          return;
        }
        const body = await r.text();
        if (token !== this.searchToken) return;
        for (const l of body.split('\n')) {
          if (!l) continue;
          const m = JSON.parse(l);
          if (m.done) this.truncated = m.truncated; else this.addMatch(m.line);
        }
      } else if (this.query) {
        for (let i = 0; i < this.lines.length; i++) if (this.matchLine(i)) this.addMatch(this.first + i);
      }
      if (this.matchList.length) this.step(1);
      else { this.showCount(); this.schedule(); }
    }

    step(d) {
      if (!this.matchList.length) return;
      this.cur = (this.cur + d + this.matchList.length) % this.matchList.length;
      this.showCount();
      this.goToLine(this.matchList[this.cur]);
      this.schedule();
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    const el = document.getElementById('log');
    if (el && window.EventSource) window.shiplogLog = new LogView(el);
  });
})();
