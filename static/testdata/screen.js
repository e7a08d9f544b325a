// Feeds the cases on stdin (JSON) to term.js's Screen and prints what
// each shows: static/term_test.go holds the cases.
const { Screen, styles, rowText } = require('../term.js');
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const out = [];
  for (const c of JSON.parse(input)) {
    const s = new Screen({ height: c.height || 0 });
    let n = 1;
    for (const step of c.steps) {
      if (step.line !== undefined) s.line(n++, step.line);
      else if (step.block !== undefined) s.block(n++, 1, step.block);
      else if (step.partial !== undefined) s.partial(n, step.partial);
      else if (step.drop !== undefined) s.drop(step.drop);
    }
    out.push({
      rows: s.rows.map((r) => `${r.n}|${rowText(r)}`),
      styles: s.rows.map((r) => (r.s ? r.s.reduce((a, v, i) => (i % 2 ? a : [...a, `${v}:${JSON.stringify(styles[r.s[i + 1]])}`]), []).join(' ') : '')),
      first: s.firstLine,
      rowOf: c.rowOf ? c.rowOf.map((l) => s.rowOfLine(l)) : [],
    });
  }
  process.stdout.write(JSON.stringify(out));
});
