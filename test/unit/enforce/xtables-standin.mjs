// Stand-in for iptables, ip6tables and their -restore tools, put in front of every command
// through the backend's commandPrefix: `node xtables-standin.mjs DIR TOOL ARGS...`. Each family
// keeps its chains in DIR/kernel4.json or DIR/kernel6.json, and a restore commits atomically
// like the real one: a `-D` of a missing rule fails the whole script and changes nothing.
// Control files in DIR, per tool: `fail-TOOL` makes it exit 1, `slow-TOOL` (holding a number
// of milliseconds) makes it take that long first. Every call is appended to DIR/calls.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, tool, ...args] = process.argv.slice(2);
const family = tool.startsWith('ip6') ? 6 : 4;
const stateFile = join(dir, `kernel${family}.json`);
const chains = existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, 'utf8')) : { INPUT: [] };

let stdin = '';
if (tool.endsWith('-restore')) for await (const chunk of process.stdin) stdin += chunk;
appendFileSync(join(dir, 'calls'), `${JSON.stringify({ argv: [tool, ...args], stdin })}\n`);

const slow = join(dir, `slow-${tool}`);
if (existsSync(slow)) await new Promise((r) => setTimeout(r, Math.min(5000, Number(readFileSync(slow, 'utf8')))));
if (existsSync(join(dir, `fail-${tool}`))) fail(`${tool}: failing on demand`);

function fail(why) {
  process.stderr.write(`${why}\n`);
  process.exit(1);
}

if (tool.endsWith('-restore')) {
  for (const line of stdin.split('\n')) {
    const [verb, chain, ...rest] = line.split(' ');
    const rule = rest.join(' ');
    if (verb.startsWith(':')) chains[verb.slice(1)] = [];
    else if (verb === '-A') chains[chain].push(rule);
    else if (verb === '-I') chains[chain].unshift(rest.slice(1).join(' '));
    else if (verb === '-D') {
      const at = chains[chain]?.indexOf(rule) ?? -1;
      if (at < 0) fail(`${tool}: line: Bad rule (does a matching rule exist in that chain?)`);
      chains[chain].splice(at, 1);
    } else if (verb === '-F') chains[chain] = [];
    else if (verb === '-X') delete chains[chain];
  }
  writeFileSync(stateFile, JSON.stringify(chains));
} else if (args[0] === '-w' && args[1] === '-S') {
  const chain = args[2];
  if (!chains[chain]) fail(`${tool}: No chain/target/match by that name.`);
  process.stdout.write([`-N ${chain}`, ...chains[chain].map((r) => `-A ${chain} ${r}`)].join('\n') + '\n');
}
