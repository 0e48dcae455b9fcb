// `npm start` of an example: runs corecast with the example's config (its own port, its webhooks
// pointing at the example's backend) and the backend next to it; Ctrl-C stops both.
//
//   node ../with-corecast.js corecast.toml server.js
//
// corecast is started with `cargo run --release` from this repository, so it is built on first
// use and shares the build of the README's `cargo run --release` (which keeps port 6001: the
// examples use other ports and run beside it). CORECAST_BIN=path runs that binary instead;
// corecast's own CORECAST_* variables apply as usual (CORECAST_PORT overrides the file's port).
// To use a corecast you already run, start the backend alone: PUSHER_PORT=6001 node server.js
// (that corecast's app needs the example's settings).
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const [config, script] = process.argv.slice(2).map((p) => path.resolve(p));
const toml = fs.readFileSync(config, 'utf8');
const port = Number(process.env.CORECAST_PORT || /^port\s*=\s*(\d+)/m.exec(toml)?.[1]);
if (!port) throw new Error(`${config} must set port = N`);

const children = [];
function stop(code) {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  process.exitCode = code;
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

function run(name, command, args, env) {
  const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  child.on('exit', (code, signal) => {
    if (process.exitCode === undefined) {
      console.error(`${name} exited (${signal || code}); stopping`);
      stop(code || 1);
    }
  });
  children.push(child);
  return child;
}

async function listening() {
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/ready`)).ok) return true;
    } catch {
      // not listening yet: cargo may still be building corecast
    }
    if (process.exitCode !== undefined) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

console.log(`starting corecast on port ${port} with ${path.basename(config)}`);
if (process.env.CORECAST_BIN) {
  run('corecast', process.env.CORECAST_BIN, ['--config', config]);
} else {
  const manifest = path.join(__dirname, '..', 'Cargo.toml');
  run('corecast', 'cargo', ['run', '--release', '--quiet', '--manifest-path', manifest, '--', '--config', config]);
}
listening().then((ok) => {
  if (ok) run('backend', process.execPath, [script], { PUSHER_PORT: String(port) });
});
