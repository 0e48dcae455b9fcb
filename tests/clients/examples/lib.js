// Shared helpers for the browser tests of examples/ (run by tests/examples_browser.rs against a
// real corecast): Debian's headless Chromium driven by playwright-core, the example's backend as
// a child process, and polling with deadlines.
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const ROOT = path.join(__dirname, '../../..');
const CHROMIUM = '/usr/bin/chromium';
const CORECAST_PORT = Number(process.env.CORECAST_PORT);
const WORK_DIR = process.env.WORK_DIR;

function need(file, why) {
  if (!fs.existsSync(file)) throw new Error(`${file} is missing (${why}); run scripts/test-deps.sh`);
}

// Loads `name` from an example's own node_modules (installed by scripts/test-deps.sh).
function fromExample(example, name) {
  const dir = path.join(ROOT, 'examples', example);
  need(path.join(dir, 'node_modules', name), `a dependency of examples/${example}`);
  return require(require.resolve(name, { paths: [dir] }));
}

async function browser() {
  need(CHROMIUM, "Debian's chromium package");
  const driver = path.join(ROOT, '.testenv/browser/node_modules/playwright-core');
  need(driver, 'playwright-core');
  const { chromium } = require(driver);
  // playwright gives each launch a fresh temporary profile (user-data-dir).
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `probe` (sync or async) until it returns a truthy value, and returns that value; after
// `ms` it fails naming `what`, with `show()` (or the last error) describing the state.
async function waitFor(what, probe, { show, ms = 10000 } = {}) {
  const deadline = Date.now() + ms;
  let error;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (e) {
      error = e.message;
    }
    if (Date.now() > deadline) {
      const seen = show ? JSON.stringify(await show()) : error;
      throw new Error(`timed out waiting for ${what}${seen ? `; seen: ${seen}` : ''}`);
    }
    await sleep(50);
  }
}

// Starts `node server.js` of an example with `env`; resolves once it answers GET `readyPath`.
async function startBackend(example, env, readyPath) {
  const log = [];
  const child = spawn(process.execPath, [path.join(ROOT, 'examples', example, 'server.js')], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [child.stdout, child.stderr]) stream.on('data', (d) => log.push(String(d)));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const backend = {
    child, log, url: `http://127.0.0.1:${env.PORT}`,
    logs: () => log.join(''),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  await waitFor(`examples/${example} to answer ${readyPath}`, async () => {
    if (child.exitCode !== null) throw new Error(`backend exited ${child.exitCode}: ${backend.logs()}`);
    return (await fetch(backend.url + readyPath)).ok;
  });
  return backend;
}

// The text of every element matching `selector` in `page`, in order.
const texts = (page, selector, attr) =>
  page.$$eval(selector, (els, a) => els.map((e) => (a ? e.getAttribute(a) : e.textContent)), attr);

// Runs a scenario: main(ctx) registers ctx.cleanup functions (always run, last first) and
// ctx.diagnostics functions (their output is printed when the scenario fails).
function run(main) {
  const ctx = { cleanup: [], diagnostics: [] };
  main(ctx).then(
    () => { console.log('ok'); },
    (e) => {
      console.error(e && e.stack || e);
      for (const d of ctx.diagnostics) console.error(d());
      process.exitCode = 1;
    },
  ).finally(async () => {
    for (const f of ctx.cleanup.reverse()) await f().catch(() => {});
    process.exit();
  });
  setTimeout(() => { console.error('scenario timed out'); process.exit(1); }, 90000).unref();
}

module.exports = { assert, path, CORECAST_PORT, WORK_DIR, fromExample, browser, waitFor, startBackend, texts, run };
