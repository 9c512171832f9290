// The web app in a real browser (Debian's Chromium, driven by playwright-core)
// against a `boxoffice up` of this test's own (see harness.mjs):
//  - a buyer searches with a typo, filters, asks for events near them, picks
//    two seats on the arena map, logs in, pays, sees tickets with QR codes,
//    and cancels with the refund shown first, while a second browser watching
//    the event sees the seats go (within a second) and come back;
//  - an organiser turns an event's waiting room on, and a newly registered
//    buyer queues, is admitted and buys;
//  - an organiser creates a venue from a seat-map file, creates, edits and
//    publishes an event that then appears in search, and cancels it.
// Every page gets a screenshot (WEB_TEST_ARTIFACTS, target/web-screenshots by
// default) and an axe-core check with no serious or critical violation, and
// the browser console must stay free of errors. The seat map's draw time,
// panning frame rate, first page load and the JavaScript shipped are
// measured and printed, not asserted.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { encode } from "uqr";
import { System, accessibilityProblems, shot, suffix, waitFor } from "./harness.mjs";

const system = new System();
before(() => system.start());
after(() => system.stop());

/** Screenshot, then no serious accessibility problem on the page as shown. */
async function check(page, name) {
  await shot(page, name);
  assert.deepEqual(await accessibilityProblems(page), [], `accessibility of ${name}`);
}

async function logIn(page, email, password = "boxoffice-demo") {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
}

/** The QR path uqr draws for `text`, as the app draws it (error correction M, border 2). */
function qrPath(text) {
  const qr = encode(text, { ecc: "M", border: 2 });
  let d = "";
  qr.data.forEach((row, y) => row.forEach((dark, x) => (d += dark ? `M${x} ${y}h1v1h-1z` : "")));
  return d;
}

/** "2027-01-02T19:30:05" as a wall clock in `timeZone`, for a datetime-local input. */
function wallClock(date, timeZone) {
  const format = new Intl.DateTimeFormat("sv-SE", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  return format.format(date).replace(" ", "T");
}

let eventUrl;
let queuedEventUrl;

describe("the app", () => {
  it("is served on the API's address with its cache rules", async (t) => {
    const index = await fetch(`${system.base}/`);
    assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(index.headers.get("cache-control"), "no-cache");
    const html = await index.text();
    const script = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
    assert.ok(script, `index.html names a hashed script: ${html}`);
    const asset = await fetch(`${system.base}${script}`);
    assert.equal(asset.status, 200);
    assert.equal(asset.headers.get("cache-control"), "public, max-age=31536000, immutable");
    const deepLink = await fetch(`${system.base}/tickets`);
    assert.equal(deepLink.status, 200);
    assert.equal(await deepLink.text(), html, "the app's own paths get index.html");

    // What a first visit downloads, gzipped as a server would send it.
    let js = 0;
    let css = 0;
    for (const [, file] of html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.(?:js|css))"/g)) {
      const body = Buffer.from(await (await fetch(`${system.base}${file}`)).arrayBuffer());
      if (file.endsWith(".js")) js += gzipSync(body, { level: 9 }).length;
      else css += gzipSync(body, { level: 9 }).length;
    }
    t.diagnostic(`measured: JavaScript shipped ${(js / 1024).toFixed(1)} KB gzipped (CSS ${(css / 1024).toFixed(1)} KB)`);
  });
});

describe("a buyer", () => {
  let buyer;
  let watcher;
  let seats;
  let subtotal;

  it("loads the home page, searches with a typo and gets suggestions", async (t) => {
    buyer = await system.page("buyer");
    const started = Date.now();
    await buyer.goto(`${system.base}/`);
    await buyer.locator(".cards .card").first().waitFor();
    const loaded = Date.now() - started;
    const timing = await buyer.evaluate(() => {
      const nav = performance.getEntriesByType("navigation")[0];
      const paint = performance.getEntriesByName("first-contentful-paint")[0];
      return { load: nav?.loadEventEnd, paint: paint?.startTime };
    });
    t.diagnostic(
      `measured: first page load ${Math.round(timing.load)} ms to the load event, first paint ${Math.round(timing.paint)} ms, ${loaded} ms until the events are listed`,
    );
    assert.equal(await buyer.locator(".cards .card").count(), 24, "upcoming events are listed");
    await check(buyer, "01-home");
    await buyer.getByRole("button", { name: "Show more events" }).click();
    await buyer.waitForFunction(() => document.querySelectorAll(".cards .card").length === 48);

    const search = buyer.getByRole("combobox", { name: "Search events" });
    await search.fill("Midnigth Echoes");
    await buyer.waitForFunction(() => document.getElementById("results-heading")?.textContent?.includes("Midnigth"));
    const titles = await buyer.locator(".cards .card h3").allTextContents();
    assert.ok(titles.length > 0 && titles[0].startsWith("The Midnight Echoes — "), `hits: ${titles}`);
    const marked = await buyer.locator(".cards .card").first().locator("h3 mark").allTextContents();
    assert.deepEqual(marked, ["Midnight", "Echoes"], "the matched words are highlighted");

    // Suggestions while typing; the keyboard picks one.
    await search.fill("");
    await search.pressSequentially("midnig", { delay: 30 });
    await buyer.waitForFunction(() => document.getElementById("results-heading")?.textContent?.endsWith("for “midnig”"));
    const listbox = buyer.getByRole("listbox", { name: "Suggestions" });
    await listbox.waitFor();
    const hits = await buyer.locator(".cards .card").count();
    assert.equal(await buyer.getByRole("button", { name: "Show more events" }).isHidden(), hits < 24, `${hits} hits: more only when a page is full`);
    const options = await listbox.getByRole("option").allTextContents();
    assert.ok(options.some((o) => o.startsWith("The Midnight Echoes · artist")), `suggestions: ${options}`);
    assert.equal(await search.getAttribute("aria-expanded"), "true");
    await check(buyer, "02-search-suggestions");
    await search.press("ArrowDown");
    await search.press("Enter");
    await buyer.waitForFunction(() => document.getElementById("results-heading")?.textContent?.includes("The Midnight Echoes"));
    assert.equal(await listbox.isHidden(), true, "choosing a suggestion closes the list");
    await search.fill("");
    await buyer.waitForFunction(() => document.getElementById("results-heading")?.textContent === "Upcoming events");
  });

  it("filters by city, category and dates, and finds events near them", async () => {
    // Every change of a filter asks again; the list is aria-busy until the answer is shown.
    const settled = () => buyer.locator(".cards:not([aria-busy])").waitFor();
    await buyer.getByLabel("City").selectOption("Berlin");
    await settled();
    const places = await buyer.locator(".cards .card .where").allTextContents();
    assert.ok(places.length > 0 && places.every((p) => p.endsWith(", Berlin")), `Berlin only: ${places}`);
    assert.match(buyer.url(), /city=Berlin/, "the filter is in the address");

    await buyer.getByLabel("City").selectOption("");
    await buyer.getByLabel("Category").selectOption({ label: "Film" });
    await settled();
    const categories = await buyer.locator(".cards .card .category").allTextContents();
    assert.ok(categories.length > 0 && categories.every((c) => c === "Film"), `films only: ${categories}`);
    const from = new Date(Date.now() + 60 * 86_400_000);
    const until = new Date(Date.now() + 90 * 86_400_000);
    await buyer.getByLabel("From").fill(from.toISOString().slice(0, 10));
    await buyer.getByLabel("Until").fill(until.toISOString().slice(0, 10));
    await settled();
    const dates = await buyer.locator(".cards .card .when").allTextContents();
    assert.ok(dates.length > 0, "films in that window");
    for (const text of dates) {
      const day = new Date(text.match(/^[A-Z][a-z]{2} \d{1,2}, \d{4}/)?.[0]);
      assert.ok(day >= new Date(from.getTime() - 86_400_000) && day <= new Date(until.getTime() + 86_400_000), `${text} is in the window`);
    }
    await buyer.getByRole("button", { name: "Clear filters" }).click();
    await settled();
    assert.equal(await buyer.locator("#results-heading").textContent(), "Upcoming events");

    // Rated 4 and up, best rated first: the demo's past shows have reviews,
    // and an event to come is rated by its performers' record.
    await buyer.getByLabel("Rating").selectOption({ label: "★ 4 and up" });
    await buyer.getByLabel("Order").selectOption({ label: "Best rated" });
    await settled();
    const ratings = (await buyer.locator(".cards .card .rating").allTextContents()).map((text) => Number(text.match(/([\d.]+)\/5/)?.[1]));
    assert.equal(ratings.length, await buyer.locator(".cards .card").count(), "every card found shows its rating");
    assert.ok(ratings.length > 0 && ratings.every((r) => r >= 4), `rated 4 and up: ${ratings}`);
    assert.deepEqual(ratings, [...ratings].sort((a, b) => b - a), "best rated first");
    assert.match(buyer.url(), /rating=4&order=rating/, "both are in the address");
    await check(buyer, "03-best-rated");
    await buyer.getByRole("button", { name: "Clear filters" }).click();
    await settled();
    assert.equal(await buyer.locator("#results-heading").textContent(), "Upcoming events");

    // Near me: a browser in Paris.
    const parisian = await system.page("near-me", { geolocation: { latitude: 48.8566, longitude: 2.3522 }, permissions: ["geolocation"] });
    await parisian.goto(`${system.base}/`);
    await parisian.locator(".cards .card").first().waitFor();
    await parisian.getByRole("button", { name: "Near me" }).click();
    await parisian.waitForFunction(() => document.getElementById("results-heading")?.textContent?.endsWith("near you"));
    const near = await parisian.locator(".cards .card .where").allTextContents();
    assert.ok(near.length > 0 && near.every((p) => p.endsWith(", Paris")), `within 50 km of Paris: ${near}`);
    assert.match(await parisian.locator(".cards .card .distance").first().textContent(), /km away/);
    assert.equal(await parisian.getByRole("button", { name: "Near me" }).getAttribute("aria-pressed"), "true");
    await check(parisian, "03-near-me");
    await parisian.context().close();
  });

  it("opens an arena event and draws its seat map from GetSeatMap", async (t) => {
    const arena = buyer.locator(".cards .card", { hasText: "Riverside Arena" });
    queuedEventUrl = new URL(await arena.nth(1).locator("h3 a").getAttribute("href"), system.base).href;
    await arena.first().locator("h3 a").click();
    await buyer.waitForURL(/\/events\/[0-9a-f-]{36}$/);
    eventUrl = buyer.url();
    await buyer.locator(".live[data-state=live]").waitFor();
    const circles = await buyer.locator("svg.seatmap circle").count();
    assert.ok(circles > 16_000, `the arena's seats are drawn: ${circles}`);
    assert.match(await buyer.locator("#available-count").textContent(), /seats available/);
    await buyer.waitForFunction(() => performance.getEntriesByName("seatmap-draw").length > 0);
    const [built, drawn] = await buyer.evaluate(() => ["seatmap-build", "seatmap-draw"].map((name) => performance.getEntriesByName(name)[0]?.duration));
    t.diagnostic(`measured: the arena's ${circles} seats drawn in ${Math.round(drawn)} ms (${Math.round(built)} ms of it building the SVG)`);
    await check(buyer, "04-event");

    // A second, anonymous browser watches the same event.
    watcher = await system.page("watcher");
    await watcher.goto(eventUrl);
    await watcher.locator(".live[data-state=live]").waitFor();
    await watcher.evaluate(() => (window.__sameDocument = true));

    // Panning: drag the map for a while and count the frames painted.
    const box = await watcher.locator("svg.seatmap").boundingBox();
    const x = box.x + box.width / 2;
    const y = box.y + box.height / 2;
    await watcher.evaluate(() => {
      window.__frames = [];
      const tick = (time) => {
        window.__frames.push(time);
        if (window.__frames.length < 100_000 && !window.__stopFrames) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    await watcher.mouse.move(x, y);
    await watcher.mouse.down();
    for (let i = 1; i <= 90; i++) await watcher.mouse.move(x + 150 * Math.sin(i / 10), y + 80 * Math.cos(i / 14));
    await watcher.mouse.up();
    const fps = await watcher.evaluate(() => {
      window.__stopFrames = true;
      const frames = window.__frames;
      return ((frames.length - 1) * 1000) / (frames.at(-1) - frames[0]);
    });
    t.diagnostic(`measured: panning the arena map at ${fps.toFixed(1)} frames/s`);
    await watcher.getByRole("button", { name: "Reset" }).click();

    // The keyboard moves and zooms the map too.
    const map = watcher.locator("svg.seatmap");
    const home = await map.getAttribute("viewBox");
    await map.focus();
    await watcher.keyboard.press("+");
    await watcher.keyboard.press("ArrowRight");
    assert.notEqual(await map.getAttribute("viewBox"), home, "+ and the arrows zoom and move the map");
    await watcher.keyboard.press("0");
    assert.equal(await map.getAttribute("viewBox"), home, "0 resets it");
  });

  it("is sent to log in when holding seats, and back with the seats kept", async () => {
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
    await check(buyer, "05-event-picked");

    await buyer.locator("#hold").click();
    await buyer.waitForURL(/\/login\?next=/);
    await logIn(buyer, "customer@demo.boxoffice.dev", "wrong password");
    await buyer.locator(".status.error").waitFor();
    assert.equal(await buyer.locator(".status.error").textContent(), "Wrong email or password.", "the ErrorInfo reason, readable");
    await check(buyer, "06-login-error");

    await buyer.locator("#use-demo").click();
    await buyer.getByRole("button", { name: "Log in" }).click();
    await buyer.waitForURL(eventUrl);
    await buyer.locator(".live[data-state=live]").waitFor();
    assert.equal(await buyer.locator(".picked-list li").count(), 2, "the picked seats survive the detour");
  });

  it("holds and pays; the watcher sees the seats taken within a second, without a reload", async (t) => {
    // The watcher's page notes when both seats turned unavailable.
    await watcher.evaluate((ids) => {
      const taken = () => ids.every((i) => document.querySelector(`circle[data-i="${i}"]`)?.matches(".held, .sold"));
      const observer = new MutationObserver(() => {
        if (taken()) {
          window.__takenAt = Date.now();
          observer.disconnect();
        }
      });
      observer.observe(document.querySelector("svg.seatmap"), { subtree: true, attributes: true, attributeFilter: ["class"] });
    }, seats);
    const held = buyer.waitForResponse((response) => response.url().endsWith("/boxoffice.inventory.v1.InventoryService/HoldSeats"));
    await buyer.locator("#hold").click();
    await held;
    const heldAt = Date.now();
    await watcher.waitForFunction(() => window.__takenAt !== undefined, null, { timeout: 10_000 });
    const seen = (await watcher.evaluate(() => window.__takenAt)) - heldAt;
    t.diagnostic(`measured: the watcher saw the seats taken ${Math.max(0, seen)} ms after the hold was answered`);
    assert.ok(seen <= 1000, `a second browser sees the seats go within 1 s (took ${seen} ms)`);

    await buyer.waitForURL(/\/checkout\/[0-9a-f-]{36}$/);
    await buyer.locator("#total").waitFor();
    assert.match(await buyer.locator(".countdown").textContent(), /held for \d+:\d\d/);
    subtotal = await buyer.locator(".summary tfoot tr").first().locator("td").textContent();
    await check(buyer, "07-checkout");
    assert.equal(await buyer.locator("#card").inputValue(), "tok_visa");
    await buyer.locator("#pay").click();
    await buyer.locator("#confirmed").waitFor();
    assert.equal(await buyer.locator(".tickets .ticket svg.qr").count(), 2, "a QR code per ticket");
    await check(buyer, "08-confirmed");

    await watcher.waitForFunction((ids) => ids.every((i) => document.querySelector(`circle[data-i="${i}"]`)?.classList.contains("sold")), seats, {
      timeout: 10_000,
    });
    assert.equal(await watcher.evaluate(() => window.__sameDocument), true, "no reload");
    await shot(watcher, "09-watcher-sees-sold");
  });

  it("sees the tickets with QR codes that carry the ticket codes, and cancels with the refund shown first", async () => {
    await buyer.getByRole("link", { name: "My tickets", exact: true }).click();
    await buyer.waitForURL(/\/tickets$/);
    const booking = buyer.locator(".booking").first();
    await booking.waitFor();
    assert.match(await booking.locator(".state").textContent(), /Confirmed/);
    const tickets = booking.locator(".ticket");
    assert.equal(await tickets.count(), 2);
    for (let i = 0; i < 2; i++) {
      const code = await tickets.nth(i).locator("details code").textContent();
      assert.ok(code.length > 20, "a signed ticket code");
      assert.equal(await tickets.nth(i).locator("svg.qr path").getAttribute("d"), qrPath(code), "the QR code encodes the ticket's code");
    }
    await check(buyer, "10-tickets");

    await booking.getByRole("button", { name: "Cancel booking" }).click();
    const dialog = buyer.getByRole("dialog");
    await dialog.waitFor();
    assert.equal(await dialog.locator("#refund-amount").textContent(), subtotal, "the refund is the ticket prices, shown before cancelling");
    await check(buyer, "11-cancel-confirm");
    await dialog.getByRole("button", { name: /^Cancel and refund/ }).click();
    await buyer.locator(".booking").first().locator(".state", { hasText: "Cancelled" }).waitFor();
    assert.match(await buyer.locator(".booking").first().locator(".refunded").textContent(), new RegExp(`refunded ${subtotal.replace(/[.$]/g, "\\$&")}`));
    await watcher.waitForFunction((ids) => ids.every((i) => !document.querySelector(`circle[data-i="${i}"]`)?.matches(".held, .sold")), seats, {
      timeout: 10_000,
    });
  });

  it("works on a phone-sized screen", async () => {
    const phone = await system.page("phone", { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await phone.goto(`${system.base}/`);
    await phone.locator(".cards .card").first().waitFor();
    await check(phone, "12-home-phone");
    await phone.goto(eventUrl);
    await phone.locator(".live[data-state=live]").waitFor();
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `nothing wider than the screen: ${width}px`);
    await check(phone, "13-event-phone");
    await phone.context().close();
  });

  it("logs out by dropping the token", async () => {
    await buyer.getByRole("button", { name: "Log out" }).click();
    await buyer.getByRole("link", { name: "Log in" }).waitFor();
    assert.equal(await buyer.evaluate(() => localStorage.getItem("boxoffice.session")), null);
    await buyer.goto(`${system.base}/tickets`);
    await buyer.waitForURL(/\/login\?next=%2Ftickets$/);

    // A token the edge no longer accepts (a restarted `boxoffice up` signs with a new key) is dropped too.
    await buyer.evaluate(() =>
      localStorage.setItem("boxoffice.session", JSON.stringify({ token: "not-a-token", email: "x@example.com", expiresAt: Date.now() + 60_000 })),
    );
    await buyer.goto(`${system.base}/tickets`);
    await buyer.waitForURL(/\/login\?next=%2Ftickets$/);
    assert.equal(await buyer.evaluate(() => localStorage.getItem("boxoffice.session")), null);
  });
});

describe("the waiting room", () => {
  it("is turned on by an organiser; a newly registered buyer queues, is admitted and buys", async () => {
    const buyer = await system.page("queued buyer");
    await buyer.goto(queuedEventUrl);
    await buyer.locator(".live[data-state=live]").waitFor();
    await buyer.getByRole("link", { name: "Register" }).click();
    await buyer.waitForURL(/\/register\?next=/);
    await buyer.getByLabel("Your name").fill("Queue Tester");
    await buyer.getByLabel("Email").fill(`queue-${suffix}@example.com`);
    await buyer.getByLabel("Password").fill("correct horse battery");
    await check(buyer, "14-register");
    await buyer.getByRole("button", { name: "Create account" }).click();
    await buyer.waitForURL(queuedEventUrl);
    await buyer.locator("#account .who", { hasText: "Queue Tester" }).waitFor();

    // The organiser turns the room on, opening a few seconds from now so the
    // buyer sees the line before being let through.
    const organiser = await system.page("organiser");
    const id = new URL(queuedEventUrl).pathname.split("/").pop();
    await organiser.goto(`${system.base}/login?next=/organiser/events/${id}`);
    await logIn(organiser, "admin@demo.boxoffice.dev");
    await organiser.waitForURL(new RegExp(`/organiser/events/${id}$`));
    await organiser.locator("#wr-rate").waitFor();
    await organiser.getByLabel("Buyers let through per second").fill("1");
    await organiser.getByLabel(/Opens at/).fill(wallClock(new Date(Date.now() + 15_000), "Europe/London"));
    await organiser.getByRole("button", { name: "Apply" }).click();
    await organiser.locator("#wr-result", { hasText: "Waiting room on" }).waitFor();
    await check(organiser, "15-organiser-waiting-room");
    await organiser.context().close();

    await buyer.getByLabel("Tickets").fill("2");
    await buyer.getByRole("button", { name: "Find best seats" }).click();
    await buyer.waitForURL(/\/queue$/);
    await buyer.locator("#queue-position", { hasText: /in line/ }).waitFor();
    assert.match(await buyer.locator("#queue-wait").textContent(), /^Estimated wait: /);
    await check(buyer, "16-queue");

    await buyer.waitForURL(queuedEventUrl, { timeout: 60_000 });
    await buyer.locator(".status", { hasText: "through the waiting room" }).waitFor();
    await buyer.locator(".live[data-state=live]").waitFor();
    await buyer.getByLabel("Tickets").fill("2");
    await buyer.getByRole("button", { name: "Find best seats" }).click();
    await buyer.waitForURL(/\/checkout\/[0-9a-f-]{36}$/);
    await buyer.locator("#pay").click();
    await buyer.locator("#confirmed").waitFor();
    assert.equal(await buyer.locator(".tickets .ticket svg.qr").count(), 2);
    await buyer.context().close();
  });
});

describe("an organiser", () => {
  let organiser;
  const title = `Webtest Gala ${suffix}`;

  it("creates a venue from a seat-map file", async () => {
    organiser = await system.page("organiser");
    await organiser.goto(`${system.base}/login?next=/organiser`);
    await logIn(organiser, "admin@demo.boxoffice.dev");
    await organiser.waitForURL(/\/organiser$/);
    await organiser.locator(".events-table tbody tr").first().waitFor();
    await check(organiser, "17-organiser");

    await organiser.getByRole("link", { name: "New venue" }).click();
    const seatMap = {
      sections: [
        { name: "Stalls", kind: "SEATED", rows: Array.from("ABCDEF", (label) => ({ label, seatCount: 18 })) },
        { name: "Standing", kind: "GENERAL_ADMISSION", capacity: 150 },
      ],
    };
    await organiser.getByLabel("Seat-map file (JSON)").setInputFiles({
      name: "hall.json",
      mimeType: "application/json",
      buffer: Buffer.from(JSON.stringify(seatMap)),
    });
    await organiser.locator(".preview caption", { hasText: "2 sections, 258 places" }).waitFor();
    await organiser.getByLabel("Name").fill(`Webtest Hall ${suffix}`);
    await organiser.getByLabel("City").fill("Manchester");
    await organiser.getByLabel("Country code").fill("GB");
    await organiser.getByLabel("Latitude").fill("53.4808");
    await organiser.getByLabel("Longitude").fill("-2.2426");
    // A field the catalog refuses comes back as a sentence naming the field.
    await organiser.getByLabel("Time zone").fill("Mars/Olympus_Mons");
    await organiser.getByRole("button", { name: "Create venue" }).click();
    const error = organiser.locator(".status.error");
    await error.waitFor();
    assert.match(await error.textContent(), /^Please check time zone: /, "an INVALID_FIELD error, readable");
    await check(organiser, "18-new-venue-error");
    await organiser.getByLabel("Time zone").fill("Europe/London");
    await organiser.getByRole("button", { name: "Create venue" }).click();
    await organiser.waitForURL(/\/organiser\/events\/new\?venue=/);
  });

  it("creates, edits and publishes an event with price tiers, which then appears in search", async () => {
    await organiser.locator(".tier").first().waitFor();
    await organiser.getByLabel("Title").fill(title);
    await organiser.getByLabel("Description").fill("A night to test the web app.");
    await organiser.getByLabel("Category", { exact: true }).selectOption({ label: "Concert" });
    await organiser.getByLabel("Performers").fill("The Midnight Echoes");
    const start = new Date(Date.now() + 30 * 86_400_000);
    await organiser.getByLabel("Starts").fill(`${wallClock(start, "Europe/London").slice(0, 10)}T20:00`);
    await organiser.getByLabel("Ends").fill(`${wallClock(start, "Europe/London").slice(0, 10)}T23:00`);
    const tier = organiser.locator(".tier").first();
    await tier.getByLabel("Name").fill("Stalls");
    await tier.getByLabel("Price", { exact: true }).fill("25");
    await tier.getByLabel(/Standing/).uncheck();
    await organiser.getByRole("button", { name: "Add a price tier" }).click();
    const standing = organiser.locator(".tier").nth(1);
    await standing.getByLabel("Name").fill("Standing");
    await standing.getByLabel("Price", { exact: true }).fill("15");
    await standing.getByLabel(/Standing/).check();
    await check(organiser, "19-new-event");
    await organiser.getByRole("button", { name: "Create draft" }).click();
    await organiser.waitForURL(/\/organiser\/events\/[0-9a-f-]{36}\?saved=created$/);
    await organiser.locator("#event-status", { hasText: "Draft" }).waitFor();
    assert.equal(await organiser.locator(".tier").count(), 2);

    await organiser.locator(".tier").first().getByLabel("Price", { exact: true }).fill("27.50");
    await organiser.getByRole("button", { name: "Save changes" }).click();
    await organiser.waitForURL(/\?saved=updated$/);
    await organiser.locator(".tier").first().waitFor();
    assert.equal(await organiser.locator(".tier").first().getByLabel("Price", { exact: true }).inputValue(), "27.50");

    await organiser.getByRole("button", { name: "Publish" }).click();
    await organiser.waitForURL(/\?saved=published$/);
    await organiser.locator("#event-status", { hasText: "Published" }).waitFor();
    await check(organiser, "20-event-published");

    const buyer = await system.page("searcher");
    await buyer.goto(`${system.base}/`);
    await buyer.locator(".cards .card").first().waitFor();
    // The search index follows the catalog through its outbox: ask until it has it.
    await waitFor("the new event in search", 30_000, async () => {
      await buyer.getByRole("combobox", { name: "Search events" }).fill(`webtest gala ${suffix}`);
      await buyer.waitForFunction(() => document.getElementById("results-heading")?.textContent?.includes("webtest"));
      return (await buyer.locator(".cards .card h3", { hasText: title }).count()) === 1;
    });
    await buyer.locator(".cards .card h3 a", { hasText: title }).click();
    await buyer.locator(".live[data-state=live]").waitFor();
    assert.match(await buyer.locator(".legend").textContent(), /Stalls £27\.50/);
    await buyer.context().close();
  });

  it("cancels the event with a reason", async () => {
    organiser.once("dialog", (dialog) => dialog.accept());
    await organiser.getByLabel("Reason buyers will see").fill("The hall is flooded.");
    await organiser.getByRole("button", { name: "Cancel the event" }).click();
    await organiser.waitForURL(/\?saved=cancelled$/);
    await organiser.locator("#event-status", { hasText: "Cancelled" }).waitFor();
    await organiser.context().close();
  });
});

describe("the browser console", () => {
  it("logged no errors", () => {
    assert.deepEqual(system.consoleErrors, []);
  });
});
