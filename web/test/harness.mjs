// What the browser tests share: a `boxoffice up` of their own (a fresh
// database, its own Redis key prefix, a free port, demo data), Debian's
// Chromium through playwright-core, console errors collected from every
// page, screenshots, and an axe-core accessibility check injected into the
// page under test.
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { mkdirSync, openSync, readdirSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const axeScript = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
export const artifacts = process.env.WEB_TEST_ARTIFACTS ?? path.join(here, "..", "..", "target", "web-screenshots");
export const dist = path.join(here, "..", "dist");
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

export const suffix = randomBytes(4).toString("hex");
const database = `boxoffice_webtest_${suffix}`;
const keyPrefix = `boxoffice-webtest-${suffix}:`;

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

/** Polls `probe` until it is truthy or the deadline passes. */
export async function waitFor(what, deadlineMs, probe) {
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

export class System {
  /** Names this run's screenshots and log ("" for app.test.mjs, e.g. "sales-" for another file). */
  prefix;
  server;
  exited = null;
  base;
  browser;
  consoleErrors = [];

  constructor(prefix = "") {
    this.prefix = prefix;
  }

  async start() {
    const binary = process.env.BOXOFFICE_BIN;
    if (!binary) throw new Error("BOXOFFICE_BIN names the boxoffice binary");
    mkdirSync(artifacts, { recursive: true });
    // Only this run's screenshots: drop an earlier run's (named <prefix>NN-page.png).
    const earlier = new RegExp(`^${this.prefix}\\d\\d-[\\w-]+\\.png$`);
    for (const name of readdirSync(artifacts)) if (earlier.test(name)) rmSync(path.join(artifacts, name));
    const port = await freePort();
    this.base = `http://127.0.0.1:${port}`;
    const log = openSync(path.join(artifacts, `${this.prefix}boxoffice-up.log`), "w");
    this.server = spawn(binary, ["up"], {
      env: {
        ...process.env,
        BOXOFFICE_LISTEN: `127.0.0.1:${port}`,
        BOXOFFICE_EDGE_ADMIN_LISTEN: "off",
        BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN: "127.0.0.1:0",
        BOXOFFICE_DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${database}`,
        BOXOFFICE_REDIS_KEY_PREFIX: keyPrefix,
        BOXOFFICE_WEB_DIR: dist,
        // The demo's first events are a day or two away: let them be cancelled with a refund.
        BOXOFFICE_CHECKOUT_REFUND_CUTOFF_HOURS: "1",
        BOXOFFICE_LOG: "warn",
      },
      stdio: ["ignore", log, log],
    });
    this.server.on("exit", (code, signal) => (this.exited = { code, signal }));
    await waitFor(`boxoffice up on ${this.base}`, STARTUP, async () => {
      if (this.exited) throw new Error(`boxoffice up exited (${JSON.stringify(this.exited)}); see boxoffice-up.log`);
      return (await fetch(`${this.base}/`)).ok;
    });
    this.browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  }

  async stop() {
    await this.browser?.close();
    if (this.server && !this.exited) {
      this.server.kill("SIGTERM");
      await waitFor("boxoffice up to stop", 30_000, () => this.exited !== null).catch(() => this.server.kill("SIGKILL"));
    }
    // This run's own database and keys, nobody else's.
    spawnSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`]);
    spawnSync("sh", ["-c", `redis-cli -h 127.0.0.1 --scan --pattern '${keyPrefix}*' | xargs -r redis-cli -h 127.0.0.1 DEL >/dev/null`]);
  }

  /** A new browser (own cookies and storage) with one page, its console watched. */
  async page(name, options = {}) {
    const context = await this.browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
    const page = await context.newPage();
    page.on("console", (message) => {
      if (message.type() === "error") this.consoleErrors.push(`${name}: ${message.text()}`);
    });
    page.on("pageerror", (error) => this.consoleErrors.push(`${name}: ${error.message}`));
    return page;
  }
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

/** axe-core's serious and critical violations on the page as it is now. */
export async function accessibilityProblems(page) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: axeScript });
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join("; ")}`);
  });
}
