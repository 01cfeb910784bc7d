// A scripted SMTP client for what swaks cannot do (RSET then AUTH, or a session that waits):
// run inside the test namespace as `node smtp-steps.mjs JSON`, where JSON is
// {"host", "port", "from" (local address), "steps": ["EHLO x", {"sleepMs": n}, ...]}.
// Prints `S: <reply line>` for every server line and `C: <command>` for every command sent;
// every wait is bounded (30 s per reply, 60 s per sleep).
import { connect } from 'node:net';

const { host, port, from, steps } = JSON.parse(process.argv[2]);
const sock = connect({ host, port, localAddress: from });
sock.setEncoding('latin1');
let buf = '';
let waiting = null;

sock.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl).replace(/\r$/, '');
    buf = buf.slice(nl + 1);
    console.log(`S: ${line}`);
    // The last line of a reply has a blank after its code.
    if (/^\d{3} /.test(line) && waiting) {
      const w = waiting;
      waiting = null;
      w(line);
    }
  }
});
sock.on('error', (e) => {
  console.log(`E: ${e.message}`);
  process.exit(2);
});

function reply() {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply within 30 s')), 30_000);
    waiting = (line) => {
      clearTimeout(timer);
      resolve(line);
    };
  });
}

await new Promise((resolve) => sock.once('connect', resolve));
await reply();
for (const step of steps) {
  if (typeof step === 'object') {
    await new Promise((r) => setTimeout(r, Math.min(step.sleepMs, 60_000)));
    continue;
  }
  console.log(`C: ${step}`);
  sock.write(`${step}\r\n`);
  const line = await reply();
  if (line.startsWith('421')) break;
}
sock.end();
