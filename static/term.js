// shiplog terminal screen: what a terminal would show for a log's lines.
// No build step; plain modern JavaScript. It runs in the page (app.js) and
// under Node for its own tests (term_test.js).
//
// The log's raw lines go in one at a time, in order; rows come out. A row
// is a line of the screen: its text, the style of each stretch of it, and
// its number: the number of the raw line that first wrote to it, so a
// permalink (#L57) names the row as the raw log names the line. A raw line
// that only redraws rows above (docker pull moving the cursor up) makes no
// row of its own, so its number is skipped.
//
// What is applied: SGR styles (16, 256 and true colour, colon forms,
// underline styles, faint, inverse, concealed, strike, overline) carried
// across lines until reset; CR, backspace, tabs; cursor up, down, forward,
// back, next and previous line, column, row, position, save and restore;
// erase in line and in display, erase, insert and delete characters; the
// DEC line-drawing character set. OSC 8 hyperlinks become links (http and
// https only). Dropped, never shown: other OSC strings (window titles), APC
// (Buildkite's timestamps), DCS, PM and SOS strings, private modes, and
// controls that draw nothing.
//
// Limits, as the README says: columns are UTF-16 code units (a wide CJK
// character counts one column, as an emoji counts two); lines are not
// wrapped at a terminal width, so the cursor moves between rows, not
// wrapped screen lines; the cursor never goes above the screen's top (the
// last `height` rows, or the first row held); erasing the whole display
// starts a new screen below what was there (tmux's scroll-on-clear), so no
// history is lost; the alternate screen is the normal one.
(() => {
  'use strict';

  // ---- styles ------------------------------------------------------------
  // A style is interned: rows hold small ids, styles[id] the attributes.
  // Colours: a number 0-15 (the palette, classes f0-f15 / g0-g15) or a CSS
  // colour string. u: underline style (1 single, 2 double, 3 curly, 4
  // dotted, 5 dashed).
  const styles = [{}];
  const styleIds = new Map([['{}', 0]]);
  const intern = (st) => {
    const key = JSON.stringify(st);
    let id = styleIds.get(key);
    if (id === undefined) {
      id = styles.length;
      styles.push(st);
      styleIds.set(key, id);
    }
    return id;
  };
  const cube = [0, 95, 135, 175, 215, 255];
  const color256 = (n) => {
    if (!(n >= 0 && n <= 255)) return undefined;
    if (n < 16) return n;
    if (n < 232) { n -= 16; return `rgb(${cube[Math.floor(n / 36)]},${cube[Math.floor(n / 6) % 6]},${cube[n % 6]})`; }
    const g = 8 + (n - 232) * 10;
    return `rgb(${g},${g},${g})`;
  };
  const clamp255 = (v) => Math.max(0, Math.min(255, v | 0));

  // extColor reads an extended colour (38, 48, 58) starting at params[k]:
  // the colon form keeps it in one parameter's parts (38:2::r:g:b,
  // 38:2:r:g:b, 38:5:n), the semicolon form in the parameters after it
  // (38;2;r;g;b, 38;5;n). It returns [colour, parameters used].
  function extColor(params, k) {
    const p = params[k];
    if (p.length > 1) {
      if (p[1] === 5) return [color256(p[2]), 1];
      if (p[1] === 2) {
        // 38:2:CS:r:g:b (ITU, with a colour space that may be empty), or
        // 38:2:r:g:b as many programs write it.
        const c = p.length >= 6 ? p.slice(3, 6) : p.slice(2, 5);
        return [`rgb(${clamp255(c[0])},${clamp255(c[1])},${clamp255(c[2])})`, 1];
      }
      return [undefined, 1];
    }
    const mode = params[k + 1] && params[k + 1][0];
    if (mode === 5) return [color256(params[k + 2] && params[k + 2][0]), 3];
    if (mode === 2) {
      const v = (i) => clamp255(params[k + i] && params[k + i][0]);
      return [`rgb(${v(2)},${v(3)},${v(4)})`, 5];
    }
    return [undefined, 2];
  }

  // sgr applies Select Graphic Rendition parameters to style st.
  function sgr(st, params) {
    st = { ...st };
    for (let k = 0; k < params.length; k++) {
      const p = params[k], c = p[0];
      switch (true) {
        case c === 0: { const link = st.link; st = {}; if (link) st.link = link; break; }
        case c === 1: st.b = 1; break;
        case c === 2: st.d = 1; break;
        case c === 3: st.i = 1; break;
        case c === 4: {
          const u = p.length > 1 ? p[1] : 1;
          if (u > 0 && u <= 5) st.u = u; else delete st.u;
          break;
        }
        case c === 5 || c === 6: break; // blink: not shown
        case c === 7: st.inv = 1; break;
        case c === 8: st.hid = 1; break;
        case c === 9: st.s = 1; break;
        case c === 21: st.u = 2; break;
        case c === 22: delete st.b; delete st.d; break;
        case c === 23: delete st.i; break;
        case c === 24: delete st.u; break;
        case c === 27: delete st.inv; break;
        case c === 28: delete st.hid; break;
        case c === 29: delete st.s; break;
        case c >= 30 && c <= 37: st.fg = c - 30; break;
        case c >= 90 && c <= 97: st.fg = c - 82; break;
        case c >= 40 && c <= 47: st.bg = c - 40; break;
        case c >= 100 && c <= 107: st.bg = c - 92; break;
        case c === 39: delete st.fg; break;
        case c === 49: delete st.bg; break;
        case c === 53: st.o = 1; break;
        case c === 55: delete st.o; break;
        case c === 59: delete st.uc; break;
        case c === 38 || c === 48 || c === 58: {
          const [col, used] = extColor(params, k);
          k += used - 1;
          const key = c === 38 ? 'fg' : c === 48 ? 'bg' : 'uc';
          if (col === undefined) delete st[key]; else st[key] = col;
          break;
        }
        default: break; // fonts, ideograms and the rest: not shown
      }
    }
    return st;
  }

  // ---- rows ----------------------------------------------------------------
  // A row's runs are a flat array [col, style, col, style, ...]: each style
  // holds from its col to the next run's; null when the whole row is
  // unstyled.
  const styleAt = (runs, x) => {
    if (!runs) return 0;
    let s = 0;
    for (let i = 0; i < runs.length && runs[i] <= x; i += 2) s = runs[i + 1];
    return s;
  };
  // setRuns returns runs with [from, to) in style sid; len is the text's
  // length after the change.
  function setRuns(runs, from, to, sid, len) {
    if (to <= from) return runs;
    if (!runs && sid === 0) return null;
    // Appending in the style the row ends with: nothing changes.
    if (runs && to >= len && runs[runs.length - 1] === sid && runs[runs.length - 2] <= from) return runs;
    const after = styleAt(runs, to);
    const pairs = [];
    if (runs) { for (let i = 0; i < runs.length && runs[i] < from; i += 2) pairs.push(runs[i], runs[i + 1]); }
    pairs.push(from, sid);
    if (to < len) {
      pairs.push(to, after);
      if (runs) for (let i = 0; i < runs.length; i += 2) if (runs[i] > to && runs[i] < len) pairs.push(runs[i], runs[i + 1]);
    }
    return normalRuns(pairs);
  }
  // normalRuns starts runs at column 0, keeps the last of runs at one
  // column, joins neighbours of one style, and is null for no style at all.
  function normalRuns(pairs) {
    const out = [];
    if (pairs.length && pairs[0] !== 0) out.push(0, 0);
    for (let i = 0; i < pairs.length; i += 2) {
      const col = pairs[i], s = pairs[i + 1];
      if (out.length && out[out.length - 2] === col) { out.length -= 2; }
      if (out.length && out[out.length - 1] === s) continue;
      out.push(col, s);
    }
    return out.length === 0 || (out.length === 2 && out[1] === 0) ? null : out;
  }
  // cutRuns keeps the runs of [0, len).
  function cutRuns(runs, len) {
    if (!runs) return null;
    const out = [];
    for (let i = 0; i < runs.length && runs[i] < len; i += 2) out.push(runs[i], runs[i + 1]);
    return normalRuns(out);
  }

  // The DEC special graphics set (ESC ( 0): line drawing.
  const DEC = { j: '┘', k: '┐', l: '┌', m: '└', n: '┼', q: '─', t: '├', u: '┤', v: '┴', w: '┬', x: '│', a: '▒', f: '°', g: '±', '~': '·', '`': '◆', o: '⎺', s: '⎽', y: '≤', z: '≥', '{': 'π', '|': '≠', '}': '£' };
  const decGraphics = (s) => s.replace(/[j-nqtuvwxafg~`osyz{|}]/g, (c) => DEC[c] || c);

  let version = 0; // a row's v changes, never back, at each change

  // Matches the next control: C0 controls (ESC, CR, BS, TAB, …) and DEL.
  const CTRL = /[\x00-\x1f\x7f]/g;
  // An escape sequence at lastIndex: CSI, the string sequences (OSC, DCS,
  // APC, PM, SOS, ended by BEL or ST, or by the line's end), and the short
  // ones.
  const ESCSEQ = /\x1b(?:\[([0-?]*)([ -\/]*)([@-~])|([\]P_^X])([^\x07\x1b]*)(?:\x07|\x1b\\)?|([()*+])(.)|([ -\/]+)[0-~]|([0-~]))/y;

  class Screen {
    // height bounds how far up the cursor can go: the rows of the terminal
    // the job saw (tty: true), or 100.
    constructor(opts = {}) {
      this.height = opts.height > 0 ? opts.height : 100;
      this.cols = opts.cols > 0 ? opts.cols : 0; // 0: no right margin
      this.reset();
    }

    reset() {
      this.rows = [];
      this.r = 0; this.c = 0; // the cursor; r === rows.length: the row to come
      this.pen = 0;
      this.top = 0; // rows above are history: out of the cursor's reach
      this.saved = null;
      this.g0 = false; // DEC line drawing in G0
      // A scrolling region that leaves rows below it (DECSTBM, as apt
      // pins its progress bar to the last row): its bottom, a screen row
      // (1-based); 0 for none. Whatever is drawn below it is a status
      // line, not log output: it is not kept (the terminal's is erased
      // when the region goes, too).
      this.regionBottom = 0;
      this.off = false; // the cursor is below the region: drawing is dropped
      this.lineRow = []; // per raw line held: the row it drew on first
      this.firstLine = 0; // the raw line number of lineRow[0]
      this.undo = null; // while a partial line is shown: how to take it back
      this.cur = 0; // the raw line number being fed
    }

    // line feeds raw line n (without its newline).
    line(n, text) {
      this.clearPartial();
      this.feed(n, text);
      this.newline();
    }

    // block adds a row of its own for raw line n (a workflow command, a
    // marker), kind k, showing text: at the bottom, whatever the cursor.
    block(n, k, text) {
      this.clearPartial();
      this.cur = n;
      if (!this.lineRow.length) this.firstLine = n;
      this.lineRow.push(this.rows.length);
      this.rows.push({ n, t: text, s: null, k, v: ++version });
      this.r = this.rows.length; this.c = 0;
    }

    // partial shows text as raw line n, not finished yet: it replaces the
    // partial shown before, and the next line or block takes it back first.
    partial(n, text) {
      this.clearPartial();
      if (!text) return;
      this.undo = { rows: new Map(), len: this.rows.length, state: this.state(), lines: this.lineRow.length };
      this.feed(n, text);
    }

    clearPartial() {
      const u = this.undo;
      if (!u) return;
      this.undo = null;
      for (const [row, old] of u.rows) { row.t = old.t; row.s = old.s; row.v = ++version; }
      this.rows.length = u.len;
      this.lineRow.length = u.lines;
      Object.assign(this, u.state);
    }

    state() { return { r: this.r, c: this.c, pen: this.pen, top: this.top, saved: this.saved, g0: this.g0, cur: this.cur, regionBottom: this.regionBottom, off: this.off }; }

    // drop forgets the first k rows (the page keeps a bounded window) and
    // the raw lines that drew only on them. It returns how many raw lines
    // went.
    drop(k) {
      this.clearPartial();
      k = Math.min(k, this.rows.length);
      if (k <= 0) return 0;
      this.rows.splice(0, k);
      let gone = 0;
      while (gone < this.lineRow.length && this.lineRow[gone] < k) gone++;
      this.lineRow.splice(0, gone);
      for (let i = 0; i < this.lineRow.length; i++) this.lineRow[i] = Math.max(0, this.lineRow[i] - k);
      this.firstLine += gone;
      this.r = Math.max(0, this.r - k);
      this.top = Math.max(0, this.top - k);
      if (this.saved) this.saved = { ...this.saved, r: Math.max(0, this.saved.r - k) };
      return gone;
    }

    // rowOfLine is the index of the row raw line n drew on first, or -1.
    rowOfLine(n) {
      const i = n - this.firstLine;
      return i >= 0 && i < this.lineRow.length ? Math.min(this.lineRow[i], this.rows.length - 1) : -1;
    }

    // screenTop is the first row the cursor can reach: the screen is the
    // last height rows, counting the row to come.
    screenTop() { return Math.max(this.top, this.rows.length + 1 - this.height, 0); }

    // row returns the cursor's row for writing, making it if it is the row
    // to come; undo keeps what a partial line changes.
    row() {
      let row;
      if (this.r >= this.rows.length) {
        this.r = this.rows.length;
        row = { n: this.cur, t: '', s: null, k: 0, v: ++version };
        this.rows.push(row);
        this.noteLine(this.r);
        return row;
      }
      row = this.rows[this.r];
      if (this.undo && this.r < this.undo.len && !this.undo.rows.has(row)) this.undo.rows.set(row, { t: row.t, s: row.s });
      this.noteLine(this.r);
      return row;
    }

    // noteLine records the row the current raw line drew on first.
    noteLine(r) {
      if (!this.lineRow.length) this.firstLine = this.cur;
      const i = this.cur - this.firstLine;
      if (i === this.lineRow.length) this.lineRow.push(r);
    }

    newline() {
      if (this.off) { this.off = false; this.c = 0; return; } // the status line's end
      // A raw line that drew nothing (an empty line, or moves alone) on the
      // row to come leaves that row empty: it still shows, as a blank line.
      if (this.r >= this.rows.length) this.row();
      else this.noteLine(this.r);
      this.r++;
      this.c = 0;
    }

    feed(n, text) {
      this.cur = n;
      if (!text) return;
      if (text.indexOf('\x1b') < 0 && !/[\x00-\x1f\x7f]/.test(text) && !this.g0) { this.put(text); return; }
      let at = 0;
      CTRL.lastIndex = 0;
      while (at < text.length) {
        CTRL.lastIndex = at;
        const m = CTRL.exec(text);
        const end = m ? m.index : text.length;
        if (end > at) this.put(text.slice(at, end));
        if (!m) break;
        at = end + 1;
        switch (text.charCodeAt(end)) {
          case 0x1b: {
            ESCSEQ.lastIndex = end;
            const e = ESCSEQ.exec(text);
            if (!e) break; // a lone ESC: dropped
            at = ESCSEQ.lastIndex;
            this.escape(e);
            break;
          }
          case 0x0d: this.c = 0; break; // CR
          case 0x08: if (this.c > 0) this.c--; break; // BS
          case 0x09: this.c = (Math.floor(this.c / 8) + 1) * 8; if (this.cols) this.c = Math.min(this.c, this.cols - 1); break; // TAB
          case 0x0e: break; // SO, SI: G1 is not used
          case 0x0f: break;
          default: break; // BEL, NUL and other controls draw nothing
        }
      }
    }

    put(s) {
      if (this.off) return;
      if (this.g0) s = decGraphics(s);
      const row = this.row(), c = this.c;
      let t = row.t;
      if (c > t.length) {
        row.s = setRuns(row.s, t.length, c, 0, c);
        t += ' '.repeat(c - t.length);
      }
      const end = c + s.length;
      row.t = c === t.length ? t + s : t.slice(0, c) + s + t.slice(end);
      row.s = setRuns(row.s, c, end, this.pen, row.t.length);
      row.v = ++version;
      this.c = end;
    }

    // erase blanks [from, to) of the cursor's row; to past the end cuts it.
    erase(from, to) {
      if (this.off || this.r >= this.rows.length) return;
      const row = this.row(), t = row.t;
      if (from >= t.length) return;
      if (to >= t.length) { row.t = t.slice(0, from); row.s = cutRuns(row.s, from); }
      else { row.t = t.slice(0, from) + ' '.repeat(to - from) + t.slice(to); row.s = setRuns(row.s, from, to, 0, row.t.length); }
      row.v = ++version;
    }

    eraseRow(i) {
      const row = this.rows[i];
      if (!row || row.k || (!row.t && !row.s)) return;
      if (this.undo && !this.undo.rows.has(row) && i < this.undo.len) this.undo.rows.set(row, { t: row.t, s: row.s });
      row.t = ''; row.s = null; row.v = ++version;
    }

    // moveTo puts the cursor at row r (within the screen: from its top to
    // the row to come) and column c.
    moveTo(r, c) {
      this.off = false;
      this.r = Math.max(this.screenTop(), Math.min(r, this.rows.length));
      if (c !== undefined) this.c = Math.max(0, this.cols ? Math.min(c, this.cols - 1) : c);
    }

    escape(e) {
      if (e[3] !== undefined) return this.csi(e[1], e[2], e[3]);
      if (e[4] !== undefined) {
        // OSC 8: a hyperlink from here until the next OSC 8 with no URI.
        if (e[4] === ']') {
          const m = /^8;[^;]*;(.*)$/s.exec(e[5]);
          if (m) {
            const st = { ...styles[this.pen] };
            if (m[1] && /^https?:\/\//i.test(m[1])) st.link = m[1]; else delete st.link;
            this.pen = intern(st);
          }
        }
        return; // titles, APC (bk;t=…), DCS, PM, SOS: never shown
      }
      if (e[6] !== undefined) { if (e[6] === '(') this.g0 = e[7] === '0'; return; }
      if (e[8] !== undefined) return;
      switch (e[9]) {
        case '7': this.saved = { r: this.r, c: this.c, pen: this.pen }; break; // DECSC
        case '8': if (this.saved) { this.moveTo(this.saved.r, this.saved.c); this.pen = this.saved.pen; } else this.off = false; break; // DECRC
        case 'M': this.moveTo(this.r - 1); break; // reverse index
        case 'D': this.moveTo(this.r + 1); break; // index
        case 'E': this.moveTo(this.r + 1, 0); break; // next line
        case 'c': this.pen = 0; this.g0 = false; break; // reset
        default: break; // keypad modes and the rest
      }
      return undefined;
    }

    csi(paramText, inter, fin) {
      if (paramText && paramText.charCodeAt(0) >= 0x3c) return; // private: ?25l, ?1049h, >c, …
      if (inter) return; // CSI with intermediates (cursor style, …)
      const params = paramText === '' ? [] : paramText.split(';').map((p) => p.split(':').map((x) => (x === '' ? undefined : parseInt(x, 10))));
      const n = (i, d = 1) => { const v = params[i] && params[i][0]; return v === undefined || Number.isNaN(v) || v === 0 ? d : v; };
      const z = (i) => { const v = params[i] && params[i][0]; return v === undefined || Number.isNaN(v) ? 0 : v; };
      const top = this.screenTop();
      if (this.off && fin !== 'm' && fin !== 'K' && fin !== 'X') this.off = false; // a move back: only CUP and VPA below the region keep it
      switch (fin) {
        case 'm': this.pen = intern(sgr(styles[this.pen], params.length ? params.map((p) => p.map((x) => x ?? 0)) : [[0]])); break;
        case 'A': this.moveTo(this.r - n(0)); break;
        case 'B': this.moveTo(this.r + n(0)); break;
        case 'C': this.moveTo(this.r, this.c + n(0)); break;
        case 'D': this.moveTo(this.r, this.c - n(0)); break;
        case 'E': this.moveTo(this.r + n(0), 0); break;
        case 'F': this.moveTo(this.r - n(0), 0); break;
        case 'G': case '`': this.moveTo(this.r, n(0) - 1); break;
        case 'd': this.moveTo(top + n(0) - 1); this.off = this.below(n(0)); break;
        case 'H': case 'f': this.moveTo(top + n(0) - 1, n(1) - 1); this.off = this.below(n(0)); break;
        case 'r': { // DECSTBM: the scrolling region; the cursor goes home
          const bottom = n(1, this.height);
          this.regionBottom = bottom < this.height ? bottom : 0;
          this.moveTo(top, 0);
          break;
        }
        case 'K': {
          const m = z(0);
          if (m === 0) this.erase(this.c, Infinity);
          else if (m === 1) this.erase(0, this.c + 1);
          else this.erase(0, Infinity);
          break;
        }
        case 'J': {
          const m = z(0);
          if (m === 0) {
            this.erase(this.c, Infinity);
            for (let i = this.r + 1; i < this.rows.length; i++) this.eraseRow(i);
          } else if (m === 1) {
            for (let i = top; i < this.r && i < this.rows.length; i++) this.eraseRow(i);
            this.erase(0, this.c + 1);
          } else {
            // The whole display: a new screen below what was there, as
            // tmux does (scroll-on-clear); the cursor keeps its place on
            // the screen, which starts with the row to come.
            this.top = this.rows.length;
            this.r = this.rows.length;
          }
          break;
        }
        case 'X': this.erase(this.c, this.c + n(0)); break;
        case 'P': { // delete characters: the rest moves left
          if (this.r >= this.rows.length) break;
          const row = this.row(), t = row.t, k = n(0);
          if (this.c >= t.length) break;
          const runs = row.s;
          row.t = t.slice(0, this.c) + t.slice(this.c + k);
          // Styles of what moved left move with it.
          if (runs) {
            const out = [];
            for (let i = 0; i < runs.length; i += 2) {
              const col = runs[i] <= this.c ? runs[i] : Math.max(this.c, runs[i] - k);
              if (out.length && out[out.length - 2] === col) out[out.length - 1] = runs[i + 1]; else out.push(col, runs[i + 1]);
            }
            row.s = cutRuns(out, row.t.length);
          }
          row.v = ++version;
          break;
        }
        case '@': { // insert blanks: the rest moves right
          if (this.r >= this.rows.length) break;
          const row = this.row(), t = row.t, k = n(0);
          if (this.c >= t.length) break;
          row.t = t.slice(0, this.c) + ' '.repeat(k) + t.slice(this.c);
          if (row.s) {
            const out = [];
            for (let i = 0; i < row.s.length; i += 2) out.push(row.s[i] < this.c ? row.s[i] : row.s[i] + k, row.s[i + 1]);
            row.s = setRuns(out, this.c, this.c + k, 0, row.t.length);
          }
          row.v = ++version;
          break;
        }
        case 's': this.saved = { r: this.r, c: this.c, pen: this.pen }; break;
        case 'u': if (this.saved) { this.moveTo(this.saved.r, this.saved.c); this.pen = this.saved.pen; } break;
        default: break; // scrolling regions, modes, reports: not applied
      }
    }
  }

  // below says whether screen row n (1-based) lies below the scrolling
  // region.
  Screen.prototype.below = function below(n) { return this.regionBottom > 0 && n > this.regionBottom; };

  // rowText is what a row shows as plain text: concealed text is blank.
  const rowText = (row) => {
    if (!row.s) return row.t;
    let out = '';
    for (let i = 0; i < row.s.length; i += 2) {
      const from = row.s[i], to = i + 2 < row.s.length ? row.s[i + 2] : row.t.length;
      const part = row.t.slice(from, to);
      out += styles[row.s[i + 1]].hid ? ' '.repeat(part.length) : part;
    }
    return out;
  };

  const api = { Screen, styles, rowText, sgr, intern };
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
  else globalThis.ShiplogTerm = api;
})();
