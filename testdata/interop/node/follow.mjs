// follow.mjs CLIENT URL: follows a shiplog event stream with a real SSE
// client, writes each log line to stdout, and exits 0 after the "end" event
// (or when the client stops by itself). Reconnecting and resuming with
// Last-Event-ID are the client library's own doing.
import { createRequire } from 'node:module';

const [client, url] = process.argv.slice(2);
const out = [];
const flush = () => { if (out.length) { process.stdout.write(out.join('')); out.length = 0; } };
// Lines that needed escaping start with \x1e (see shiplog's README).
const decode = (v) => (v.charCodeAt(0) !== 0x1e ? v : v.slice(1).replace(/\\(.)/g, (_, c) => (c === 'r' ? '\r' : c)));
// A log event is complete only if it carries an id past the last one kept
// (shiplog sends the id after the data): some clients dispatch the part of
// an event they had when the connection was cut, with the previous id.
// snippet: onLog
let lastID = -1;
let incomplete = 0;
const onLog = (data, id) => {
  const n = parseInt(id, 10);
  if (!(n > lastID)) { incomplete++; return; }
  lastID = n;
  for (const l of data.split('\n')) out.push(decode(l) + '\n');
  if (out.length > 1000) flush();
};
// end snippet
// process.exit drops what a pipe has not taken yet: the lines go out first
// (a reader slower than the end cut them short, 1 run in 30 under load).
let ended = false;
const done = (why, code = 0) => {
  if (ended) return;
  ended = true;
  clearInterval(keepAlive);
  process.stderr.write(`${client}: ${why}, ${incomplete} incomplete events dropped\n`);
  process.stdout.write(out.join(''), () => process.exit(code));
};
let errors = 0;
// Stay alive until the end: eventsource 5 waits for its reconnect on a
// timer that does not hold the process open, as a script's last task.
const keepAlive = setInterval(() => {}, 1 << 30);

if (client.startsWith('eventsource')) {
  // snippet: eventsource
  let ES;
  if (client === 'eventsource2') ES = createRequire(import.meta.url)('eventsource2');
  else ES = (await import(client)).EventSource;
  let askedFrom;
  const follow = (init) => {
    const es = new ES(url, init);
    es.addEventListener('log', (e) => onLog(e.data, e.lastEventId));
    es.addEventListener('end', () => { es.close(); done('end'); });
    es.onerror = (e) => {
      errors++;
      // 204: resumed at the end of a finished run (the end event was cut):
      // eventsource 2 says so in status, 3 and 5 in code.
      if (e && (e.status ?? e.code) === 204) {
        es.close();
        // eventsource 2 keeps an id as soon as it reads it: cut after the
        // last event's id: line, it resumes past an event it never handed
        // over. Ask again from the last id kept: a 204 to that is the end.
        if (client === 'eventsource2' && lastID >= 0 && askedFrom !== lastID) {
          askedFrom = lastID;
          follow({ headers: { 'Last-Event-ID': String(lastID) } });
          return;
        }
        done('204');
        return;
      }
      // CLOSED before the end: the client gave up by itself.
      if (es.readyState === 2) done(`stopped by the client after ${errors} errors (${e && (e.message || e.code)})`, 3);
    };
  };
  follow();
  // end snippet
} else if (client === 'fetch-event-source') {
  // snippet: fetch-event-source
  globalThis.window = globalThis; // the library reaches for window.setTimeout
  // and, when it stops, for document (without it, aborting throws later).
  globalThis.document ??= { hidden: false, addEventListener() {}, removeEventListener() {} };
  const { fetchEventSource } = await import('@microsoft/fetch-event-source');
  const ctrl = new AbortController();
  await fetchEventSource(url, {
    signal: ctrl.signal,
    openWhenHidden: true,
    onmessage(e) {
      if (e.event === 'log') onLog(e.data, e.id);
      if (e.event === 'end') { ctrl.abort(); done('end'); }
    },
    // The documented retry pattern: throw from onclose to reconnect; a
    // number from onerror is the wait before the next try.
    onclose() { errors++; throw new Error('closed'); },
    // It keeps an id when it reads the id: line, before the event's end:
    // send the id of the last event kept whole instead.
    fetch(input, init) {
      const headers = { ...init.headers };
      delete headers['last-event-id'];
      if (lastID >= 0) headers['last-event-id'] = String(lastID);
      return globalThis.fetch(input, { ...init, headers });
    },
    onerror() { errors++; return 200; },
    async onopen(res) {
      if (res.status === 204) { done('204'); }
      if (!res.ok) throw new Error(`status ${res.status}`);
    },
  });
  // end snippet
} else {
  process.stderr.write(`unknown client ${client}\n`);
  process.exit(2);
}
