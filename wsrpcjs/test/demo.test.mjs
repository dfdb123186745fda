// The demo page of `wsrpc serve`, in real Chromium (Debian's
// /usr/bin/chromium) driven headless by playwright-core: pushed updates
// arrive, a call returns its answer or its error, the server's callback
// reaches the page, and a killed and restarted server is reconnected to,
// with the subscription resumed. A screenshot is written to
// $WSRPC_SCREENSHOT, or to the temporary directory.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "./server.mjs";

const chromiumPath = process.env.WSRPC_CHROMIUM ?? "/usr/bin/chromium";
// Flags for headless Chromium as root on a closed network.
const chromiumArgs = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// Under CI a missing browser or playwright-core fails; elsewhere the
// tests skip, saying what to install.
let missing = null;
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch {
  missing = "playwright-core is not installed: run npm ci in wsrpcjs/";
}
if (!missing && !existsSync(chromiumPath)) missing = `no ${chromiumPath}: apt-get install chromium`;
if (missing && process.env.CI) throw new Error(missing);

let browser;
let srv;
before(async () => {
  if (missing) return;
  browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
  srv = await startServer();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

test("the demo page: live updates, a call, the server's callback, a reconnect", { skip: missing ?? false, timeout: 60000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
  const pageErrors = [];
  page.on("pageerror", (err) => pageErrors.push(err));
  await page.goto(srv.http);
  const state = page.locator("#state");
  await page.waitForSelector('#state[data-state="open"]');

  // Pushed updates arrive: the time topic, every second.
  const updates = async () => Number(await page.textContent("#updates"));
  await page.waitForFunction(() => Number(document.querySelector("#updates").textContent) >= 2, null, { timeout: 10000 });
  assert.match(await page.textContent("#last"), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  // A call returns its answer, and an unknown method its error.
  await page.selectOption("#method", "add");
  await page.fill("#a", "6");
  await page.fill("#b", "7.5");
  await page.click("#call-form button");
  await page.waitForSelector("#call-result.ok");
  assert.match(await page.textContent("#call-result"), /^add → 13\.5 /);
  await page.selectOption("#method", "no_such_method");
  await page.click("#call-form button");
  await page.waitForSelector("#call-result.err");
  assert.equal(await page.textContent("#call-result"), "no_such_method → error -32601: method not found: no_such_method");
  await page.selectOption("#method", "concat");
  await page.click("#call-form button");
  await page.waitForSelector("#call-result.ok");
  assert.match(await page.textContent("#call-result"), /^concat → "hello world" /);

  // The server calls the page back inside the page's own call.
  await page.fill("#name", "Ada Lovelace");
  await page.click("#greet");
  await page.waitForFunction(() => document.querySelector("#trace").children.length === 4);
  const trace = await page.$$eval("#trace li", (lis) => lis.map((li) => ({ nested: li.classList.contains("nested"), text: li.textContent })));
  assert.deepEqual(trace.map((t) => t.nested), [false, true, true, false]);
  assert.match(trace[1].text, /whoami\(\)\s+nested in greet/);
  assert.match(trace[2].text, /returns "Ada Lovelace"/);
  assert.match(trace[3].text, /greet returns "hello, Ada Lovelace"/);

  // The server goes away: the page shows it reconnecting; it comes back
  // on the same port: the page is open again, and updates resume.
  await srv.stop("SIGKILL");
  await page.waitForSelector('#state[data-state="reconnecting"]');
  assert.match(await state.textContent(), /^reconnecting in \d+\.\d s · try \d+$/);
  const before = await updates();
  srv = await startServer({ port: srv.port });
  await page.waitForSelector('#state[data-state="open"]', { timeout: 15000 });
  await page.waitForFunction((n) => Number(document.querySelector("#updates").textContent) > n, before, { timeout: 10000 });
  assert.match(await page.textContent("#log"), /reconnecting → open/);
  await page.selectOption("#method", "multiply");
  await page.fill("#a", "6");
  await page.fill("#b", "7");
  await page.click("#call-form button");
  await page.waitForFunction(() => /^multiply → 42 /.test(document.querySelector("#call-result").textContent));

  const shot = process.env.WSRPC_SCREENSHOT ?? join(tmpdir(), "wsrpc-demo.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test("the page loads wsrpc.js and wsrpc.d.ts from the server, cached by ETag", { skip: missing ?? false }, async () => {
  for (const [path, type] of [
    ["wsrpc.js", "text/javascript; charset=utf-8"],
    ["wsrpc.d.ts", "application/typescript; charset=utf-8"],
  ]) {
    const first = await fetch(srv.http + path);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("content-type"), type);
    const etag = first.headers.get("etag");
    assert.ok(etag);
    await first.arrayBuffer();
    const again = await fetch(srv.http + path, { headers: { "If-None-Match": etag } });
    assert.equal(again.status, 304);
  }
});
