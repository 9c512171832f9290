// The buyer's path in a real browser (Debian's Chromium, driven by
// playwright-core) against a `boxoffice up` of this test's own: a fresh
// database, its own Redis key prefix, a free port, demo data. Browse and
// search (with a typo), open an arena event and see its seat map, log in as
// the demo customer, pick two seats, hold, pay with tok_visa, see the
// confirmation and the booking under "My bookings" — while a second browser
// watching the same event sees those seats turn unavailable without a
// reload. Screenshots of every page go to WEB_TEST_ARTIFACTS.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { mkdirSync, openSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.env.BOXOFFICE_BIN;
const artifacts = process.env.WEB_TEST_ARTIFACTS ?? path.join(here, "..", "..", "target", "web-test");
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const STARTUP = 180_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(what, deadlineMs, probe) {
  const deadline = Date.now() + deadlineMs;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

const suffix = randomBytes(4).toString("hex");
const database = `boxoffice_webtest_${suffix}`;
const keyPrefix = `boxoffice-webtest-${suffix}:`;
let server;
let exited = null;
let base;
let browser;
const consoleErrors = [];

function watchConsole(page, name) {
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(`${name}: ${message.text()}`);
  });
  page.on("pageerror", (error) => consoleErrors.push(`${name}: ${error.message}`));
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

before(async () => {
  assert.ok(binary, "BOXOFFICE_BIN names the boxoffice binary");
  mkdirSync(artifacts, { recursive: true });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const log = openSync(path.join(artifacts, "boxoffice-up.log"), "w");
  server = spawn(binary, ["up"], {
    env: {
      ...process.env,
      BOXOFFICE_LISTEN: `127.0.0.1:${port}`,
      BOXOFFICE_EDGE_ADMIN_LISTEN: "off",
      BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN: "127.0.0.1:0",
      BOXOFFICE_DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${database}`,
      BOXOFFICE_REDIS_KEY_PREFIX: keyPrefix,
      BOXOFFICE_WEB_DIR: path.join(here, "..", "dist"),
      BOXOFFICE_LOG: "warn",
    },
    stdio: ["ignore", log, log],
  });
  server.on("exit", (code, signal) => (exited = { code, signal }));
  await waitFor(`boxoffice up on ${base}`, STARTUP, async () => {
    if (exited) throw new Error(`boxoffice up exited (${JSON.stringify(exited)}); see boxoffice-up.log`);
    const page = await fetch(`${base}/`);
    return page.ok;
  });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  if (server && !exited) {
    server.kill("SIGTERM");
    await waitFor("boxoffice up to stop", 30_000, () => exited !== null).catch(() => server.kill("SIGKILL"));
  }
  // This run's own database and keys, nobody else's.
  spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`]);
  spawnSync("sh", ["-c", `redis-cli -h 127.0.0.1 --scan --pattern '${keyPrefix}*' | xargs -r redis-cli -h 127.0.0.1 DEL >/dev/null`]);
});

describe("a buyer in the browser", () => {
  let buyer;
  let watcher;
  let eventUrl;
  let seats;

  it("serves the app on the API's address with its cache rules", async () => {
    const index = await fetch(`${base}/`);
    assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(index.headers.get("cache-control"), "no-cache");
    const html = await index.text();
    const script = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
    assert.ok(script, `index.html names a hashed script: ${html}`);
    const asset = await fetch(`${base}${script}`);
    assert.equal(asset.status, 200);
    assert.equal(asset.headers.get("cache-control"), "public, max-age=31536000, immutable");
    const deepLink = await fetch(`${base}/bookings`);
    assert.equal(deepLink.status, 200);
    assert.equal(await deepLink.text(), html, "the app's own paths get index.html");
  });

  it("lists upcoming events and finds an artist despite a typo", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    buyer = await context.newPage();
    watchConsole(buyer, "buyer");
    await buyer.goto(`${base}/`);
    await buyer.locator(".cards .card").first().waitFor();
    assert.ok((await buyer.locator(".cards .card").count()) > 5, "upcoming events are listed");
    await shot(buyer, "01-home");

    await buyer.getByLabel("Search events").fill("Midnigth Echoes");
    await buyer.waitForFunction(() => document.getElementById("results-heading")?.textContent?.includes("Midnigth"));
    const titles = await buyer.locator(".cards .card h3").allTextContents();
    assert.ok(titles.length > 0 && titles[0].startsWith("The Midnight Echoes — "), `hits: ${titles}`);
    const marked = await buyer.locator(".cards .card").first().locator("h3 mark").allTextContents();
    assert.deepEqual(marked, ["Midnight", "Echoes"], "the matched words are highlighted");
    await shot(buyer, "02-search");
    await buyer.getByLabel("Search events").fill("");
    await buyer.waitForFunction(() => document.getElementById("results-heading")?.textContent === "Upcoming events");
  });

  it("opens an arena event and draws its seat map from GetSeatMap", async (t) => {
    const card = buyer.locator(".cards .card", { hasText: "Riverside Arena" }).first();
    await card.locator("h3 a").click();
    await buyer.waitForURL(/\/events\/[0-9a-f-]{36}$/);
    eventUrl = buyer.url();
    await buyer.locator(".live[data-state=live]").waitFor();
    const circles = await buyer.locator("svg.seatmap circle").count();
    assert.ok(circles > 16_000, `the arena's seats are drawn: ${circles}`);
    assert.match(await buyer.locator("#available-count").textContent(), /seats available/);
    const drawn = await buyer.evaluate(() => performance.getEntriesByName("seatmap-draw")[0]?.duration);
    t.diagnostic(`the arena's ${circles} seats drawn in ${Math.round(drawn)} ms (measured, not asserted)`);

    // A second, anonymous browser watches the same event.
    const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    watcher = await other.newPage();
    watchConsole(watcher, "watcher");
    await watcher.goto(eventUrl);
    await watcher.locator(".live[data-state=live]").waitFor();
    await watcher.evaluate(() => (window.__sameDocument = true));
  });

  it("sends a buyer who is not logged in to log in, and back", async () => {
    // Zoom in as a buyer would, then take two free seats in full view.
    for (let i = 0; i < 3; i++) await buyer.getByRole("button", { name: "Zoom in" }).click();
    seats = await buyer.locator("svg.seatmap g.tier-0 circle:not(.held):not(.sold)").evaluateAll((nodes) => {
      const frame = document.querySelector("svg.seatmap").getBoundingClientRect();
      const buttons = document.querySelector(".zoom").getBoundingClientRect();
      const inView = (r) =>
        r.width > 0 && r.left > frame.left + 10 && r.right < frame.right - 10 && r.top > frame.top + 10 && r.bottom < frame.bottom - 10 &&
        !(r.right > buttons.left && r.top < buttons.bottom);
      return nodes.filter((n) => inView(n.getBoundingClientRect())).slice(0, 2).map((n) => n.dataset.i);
    });
    assert.equal(seats.length, 2);
    for (const seat of seats) await buyer.locator(`circle[data-i="${seat}"]`).click();
    assert.equal(await buyer.locator(".picked-list li").count(), 2);
    assert.equal(await buyer.locator("#hold").textContent(), "Hold 2 seats");
    await shot(buyer, "03-event-picked");

    await buyer.locator("#hold").click();
    await buyer.waitForURL(/\/login\?next=/);
    await shot(buyer, "04-login");
    await buyer.getByLabel("Password").fill("wrong password");
    await buyer.getByLabel("Email").fill("customer@demo.boxoffice.dev");
    await buyer.getByRole("button", { name: "Log in" }).click();
    await buyer.locator(".status.error").waitFor();
    assert.equal(await buyer.locator(".status.error").textContent(), "Wrong email or password.", "the ErrorInfo reason, readable");

    await buyer.locator("#use-demo").click();
    await buyer.getByRole("button", { name: "Log in" }).click();
    await buyer.waitForURL(eventUrl);
    await buyer.locator(".live[data-state=live]").waitFor();
    assert.equal(await buyer.locator(".picked-list li").count(), 2, "the picked seats survive the detour");
  });

  it("holds, pays with a test card, and the watcher sees the seats go without a reload", async (t) => {
    const taken = ({ ids, states }) =>
      ids.every((i) => states.some((s) => document.querySelector(`circle[data-i="${i}"]`)?.classList.contains(s)));
    const clicked = Date.now();
    await buyer.locator("#hold").click();
    await watcher.waitForFunction(taken, { ids: seats, states: ["held", "sold"] }, { timeout: 10_000 });
    t.diagnostic(`the watcher saw the seats held ${Date.now() - clicked} ms after the click`);

    await buyer.waitForURL(/\/checkout\/[0-9a-f-]{36}$/);
    await buyer.locator("#total").waitFor();
    assert.match(await buyer.locator(".countdown").textContent(), /held for \d+:\d\d/);
    await shot(buyer, "05-checkout");
    assert.equal(await buyer.locator("#card").inputValue(), "tok_visa");
    await buyer.locator("#pay").click();
    await buyer.locator("#confirmed").waitFor();
    assert.equal(await buyer.locator(".tickets li").count(), 2);
    await shot(buyer, "06-confirmed");

    await watcher.waitForFunction(taken, { ids: seats, states: ["sold"] }, { timeout: 10_000 });
    assert.equal(await watcher.evaluate(() => window.__sameDocument), true, "no reload");
    await shot(watcher, "07-watcher-sees-sold");
  });

  it("shows the booking under My bookings", async () => {
    await buyer.getByRole("link", { name: "My bookings" }).first().click();
    await buyer.waitForURL(/\/bookings$/);
    const booking = buyer.locator(".booking").first();
    await booking.waitFor();
    assert.match(await booking.locator(".state").textContent(), /Confirmed/);
    assert.equal(await booking.locator(".tickets li").count(), 2);
    await shot(buyer, "08-bookings");

    // A phone-sized screen gets the same event page, usable.
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
    const page = await phone.newPage();
    watchConsole(page, "phone");
    await page.goto(eventUrl);
    await page.locator(".live[data-state=live]").waitFor();
    await shot(page, "09-event-phone");
  });

  it("logged no errors in the browser console", () => {
    assert.deepEqual(consoleErrors, []);
  });
});
