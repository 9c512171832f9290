// The organiser's sales views in a real browser against a `boxoffice up` of
// this file's own (see harness.mjs; screenshots are named sales-NN-*.png):
//  - the organiser opens an event's Sales view from the organiser's list; a
//    buyer in a second browser holds two seats, then pays, and the
//    organiser's page shows them held, then sold (+2) with more gross revenue,
//    without a reload; leaving the page closes the WatchEventStats stream;
//  - Sales by date lists the event with its sales and the totals over the
//    range, pages with the server's page tokens, and after a sale in a
//    second currency shows each event's money but no total across currencies;
//    that booking cancelled, the event's view counts it and its refund;
//  - a buyer (no organiser role) opening either address reads the refusal.
// Every view gets a screenshot and an axe-core check; the console must stay
// free of errors.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { System, accessibilityProblems, shot, waitFor } from "./harness.mjs";

const system = new System("sales-");
before(() => system.start());
after(() => system.stop());

async function check(page, name) {
  await shot(page, name);
  assert.deepEqual(await accessibilityProblems(page), [], `accessibility of ${name}`);
}

async function logIn(page, email, password = "boxoffice-demo") {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
}

/** The raw number behind a headline figure (seats, or money in minor units). */
async function figure(page, id) {
  return BigInt(await page.locator(`#${id}`).getAttribute("data-value"));
}

describe("the sales views", () => {
  let organiser;
  let buyer;
  let eventId;
  let title;

  it("open an event's sales from the organiser's list of events", async () => {
    organiser = await system.page("organiser");
    await organiser.goto(`${system.base}/login?next=/organiser`);
    await logIn(organiser, "admin@demo.boxoffice.dev");
    await organiser.waitForURL(/\/organiser$/);
    const row = organiser.locator(".events-table").nth(1).locator("tbody tr").first();
    await row.waitFor();
    title = await row.locator("td").first().textContent();
    await row.getByRole("link", { name: `Sales of ${title}`, exact: true }).click();
    await organiser.waitForURL(/\/organiser\/events\/[0-9a-f-]{36}\/sales$/);
    eventId = new URL(organiser.url()).pathname.split("/")[3];
    await organiser.locator("#sales-live[data-state=live]").waitFor();
    assert.equal(await organiser.locator("h1").textContent(), `Sales: ${title}`);
    assert.match(await organiser.locator("#stat-sold").textContent(), /^[\d,]+ \/ [\d,]+/);
    const sections = await organiser.locator(".seats-table").first().locator("tbody tr").count();
    assert.ok(sections > 0, "a row per section");
    await organiser.evaluate(() => (window.__sameDocument = true));
  });

  it("follows a second browser's hold and purchase live, without a reload", async (t) => {
    const sold = await figure(organiser, "stat-sold");
    const held = await figure(organiser, "stat-held");
    const gross = await figure(organiser, "stat-gross");
    const confirmed = await figure(organiser, "stat-confirmed");

    buyer = await system.page("buyer");
    await buyer.goto(`${system.base}/login?next=/events/${eventId}`);
    await logIn(buyer, "customer@demo.boxoffice.dev");
    await buyer.waitForURL(new RegExp(`/events/${eventId}$`));
    await buyer.locator(".live[data-state=live]").waitFor();
    await buyer.getByLabel("Tickets").fill("2");
    await buyer.getByRole("button", { name: "Find best seats" }).click();
    await buyer.waitForURL(/\/checkout\/[0-9a-f-]{36}$/);

    // Held now is read live from inventory: the two seats show as held.
    await organiser.waitForFunction((before) => BigInt(document.getElementById("stat-held")?.dataset.value ?? "0") >= BigInt(before) + 2n, String(held), {
      timeout: 10_000,
    });

    await buyer.locator("#pay").click();
    await buyer.locator("#confirmed").waitFor();
    const paidAt = Date.now();
    await organiser.waitForFunction(
      ([soldBefore, grossBefore]) =>
        BigInt(document.getElementById("stat-sold")?.dataset.value ?? "0") === BigInt(soldBefore) + 2n &&
        BigInt(document.getElementById("stat-gross")?.dataset.value ?? "0") > BigInt(grossBefore),
      [String(sold), String(gross)],
      { timeout: 10_000 },
    );
    t.diagnostic(`measured: the organiser's page showed the sale ${Date.now() - paidAt} ms after the payment was confirmed`);
    assert.equal(await organiser.evaluate(() => window.__sameDocument), true, "no reload");
    assert.match(await organiser.locator("#stat-sold").textContent(), new RegExp(`^${(sold + 2n).toLocaleString("en-US")} /`));
    assert.equal(await figure(organiser, "stat-confirmed"), confirmed + 1n, "one more confirmed booking");
    const net = await figure(organiser, "stat-net");
    assert.equal(net, (await figure(organiser, "stat-gross")) - (await figure(organiser, "stat-refunds")), "net is gross less refunds");

    // The sections add up to the total sold.
    const bySection = await organiser
      .locator(".seats-table")
      .first()
      .locator("tbody tr")
      .evaluateAll((rows) => rows.reduce((n, row) => n + Number(row.cells[2].textContent.replace(/,/g, "")), 0));
    assert.equal(BigInt(bySection), sold + 2n, "the section rows add up to the seats sold");

    // The chart says what it shows, and its numbers are in a table too.
    const chart = organiser.locator("svg.chart[role=img]");
    await chart.waitFor();
    assert.match(await chart.locator("title").first().textContent(), /^Tickets sold per (hour|day)$/);
    assert.match(await chart.locator("desc").textContent(), /tickets from .+ the busiest/);
    assert.ok((await chart.locator(".bars rect").count()) >= 1, "a bar for the hour of the sale");
    await organiser.getByText(/^Table of tickets per/).click();
    const latest = organiser.locator(".chart-block table tbody tr").last();
    await latest.waitFor();
    assert.ok(Number((await latest.locator("td").nth(1).textContent()).replace(/,/g, "")) >= 2, "this hour's tickets");
    await check(organiser, "sales-01-event");
  });

  it("closes the live stream when the organiser leaves, and is linked from the event page", async () => {
    const closed = organiser.waitForEvent("requestfailed", {
      predicate: (request) => request.url().endsWith("/boxoffice.stats.v1.StatsService/WatchEventStats"),
      timeout: 10_000,
    });
    await organiser.getByRole("link", { name: "Buyer's page" }).click();
    await organiser.waitForURL(new RegExp(`/events/${eventId}$`));
    await closed;
    const back = organiser.getByRole("link", { name: "Sales figures" });
    await back.waitFor();
    assert.equal(await back.getAttribute("href"), `/organiser/events/${eventId}/sales`);
  });

  it("lists the event by date with its sales and the totals, page by page", async () => {
    await organiser.getByRole("link", { name: "Organiser", exact: true }).click();
    await organiser.getByRole("link", { name: "Sales by date" }).click();
    await organiser.waitForURL(/\/organiser\/sales$/);
    const table = organiser.locator(".sales-table:not([aria-busy])");
    await table.waitFor();
    // The next 90 days by default.
    const from = await organiser.getByLabel("From").inputValue();
    const to = await organiser.getByLabel("To").inputValue();
    assert.equal(Math.round((Date.parse(to) - Date.parse(from)) / 86_400_000), 90);

    const row = organiser.locator(`.sales-table tbody tr[data-event="${eventId}"]`);
    await row.waitFor();
    assert.equal(await row.locator("th").textContent(), title);
    const soldHere = Number((await row.locator(".sold-count").textContent()).split(" / ")[0].replace(/,/g, ""));
    assert.ok(soldHere >= 2, `the event shows its sales: ${soldHere}`);
    assert.notEqual(await row.locator(".net").textContent(), "—");
    const totals = organiser.locator("#sales-totals");
    const totalSold = Number((await totals.locator(".sold-count").textContent()).split(" / ")[0].replace(/,/g, ""));
    assert.ok(totalSold >= soldHere, "the totals include the event");
    const totalsText = await totals.textContent();
    await check(organiser, "sales-02-by-date");

    // The demo has more events in 90 days than a page holds.
    const firstPage = await organiser.locator(".sales-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.event));
    assert.equal(firstPage.length, 25);
    await organiser.getByRole("button", { name: "Next page" }).click();
    await organiser.locator("#sales-page", { hasText: "Page 2" }).waitFor();
    const secondPage = await organiser.locator(".sales-table tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.event));
    assert.ok(secondPage.length > 0 && secondPage.every((id) => !firstPage.includes(id)), "the next page has other events");
    assert.equal(await totals.textContent(), totalsText, "the totals are over the whole range, whatever the page");
    await organiser.getByRole("button", { name: "Previous page" }).click();
    await organiser.locator("#sales-page", { hasText: "Page 1" }).waitFor();
    await row.waitFor();

    // A second currency: the buyer buys a ticket for an event of the first
    // page that is priced in another currency than the first event.
    const firstCurrency = (await row.locator(".net").textContent()).replace(/[\d.,\s]/g, "");
    let other;
    for (const id of firstPage.slice(1)) {
      await buyer.goto(`${system.base}/events/${id}`);
      await buyer.locator(".live[data-state=live]").waitFor();
      const prices = await buyer.locator(".legend li").first().textContent();
      if (!prices.includes(firstCurrency)) {
        other = id;
        break;
      }
    }
    assert.ok(other, "the first page has an event in another currency");
    await buyer.getByLabel("Tickets").fill("1");
    await buyer.getByRole("button", { name: "Find best seats" }).click();
    await buyer.waitForURL(/\/checkout\/[0-9a-f-]{36}$/);
    await buyer.locator("#pay").click();
    await buyer.locator("#confirmed").waitFor();
    const otherRow = organiser.locator(`.sales-table tbody tr[data-event="${other}"]`);
    await waitFor("the second sale in the list", 10_000, async () => {
      await organiser.getByRole("button", { name: "Show" }).click();
      await table.waitFor();
      return (await otherRow.locator(".sold-count").textContent()).startsWith("1 /");
    });
    assert.ok(!(await otherRow.locator(".net").textContent()).includes(firstCurrency), "each event's money in its own currency");
    assert.equal(await organiser.locator("#currency-note").isVisible(), true, "mixed currencies are pointed out");
    assert.equal(await totals.locator(".net").textContent(), "Several currencies", "no total across currencies");

    // The buyer cancels that booking: the list shows the refund, and the
    // event's own sales view the cancelled booking.
    await buyer.getByRole("link", { name: "My tickets", exact: true }).click();
    const booking = buyer.locator(".booking").first();
    await booking.getByRole("button", { name: "Cancel booking" }).click();
    await buyer.getByRole("dialog").getByRole("button", { name: /^Cancel and refund/ }).click();
    await booking.locator(".state", { hasText: "Cancelled" }).waitFor();
    await waitFor("the refund in the list", 10_000, async () => {
      await organiser.getByRole("button", { name: "Show" }).click();
      await table.waitFor();
      return (await otherRow.locator(".sold-count").textContent()).startsWith("0 /");
    });
    await otherRow.getByRole("link").click();
    await organiser.waitForURL(new RegExp(`/organiser/events/${other}/sales$`));
    await organiser.locator("#sales-live[data-state=live]").waitFor();
    assert.equal(await figure(organiser, "stat-sold"), 0n);
    assert.equal(await figure(organiser, "stat-confirmed"), 1n);
    assert.equal(await figure(organiser, "stat-cancelled"), 1n);
    const refunds = await figure(organiser, "stat-refunds");
    const fees = await figure(organiser, "stat-fees");
    assert.ok(refunds > 0n, "the refund is counted");
    assert.equal(await figure(organiser, "stat-net"), (await figure(organiser, "stat-gross")) - refunds);
    assert.equal(await figure(organiser, "stat-net"), fees, "the fees are all that is left");
    await organiser.getByRole("link", { name: "Sales by date" }).click();
    await table.waitFor();

    // A shorter range, kept in the address.
    const soon = new Date(Date.parse(from) + 30 * 86_400_000).toISOString().slice(0, 10);
    await organiser.getByLabel("To").fill(soon);
    await organiser.getByRole("button", { name: "Show" }).click();
    await organiser.waitForURL(new RegExp(`/organiser/sales\\?from=${from}&to=${soon}$`));
    await table.waitFor();
    await row.waitFor();
    const shorter = Number((await totals.locator(".sold-count").textContent()).split(" / ")[1].replace(/,/g, ""));
    assert.ok(shorter > 0, "capacity over the shorter range");

    // On a phone: the tables scroll inside the page, nothing wider than the screen.
    await organiser.setViewportSize({ width: 390, height: 844 });
    await organiser.goto(`${system.base}/organiser/events/${eventId}/sales`);
    await organiser.locator("#sales-live[data-state=live]").waitFor();
    const width = await organiser.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `nothing wider than the screen: ${width}px`);
    await check(organiser, "sales-04-event-phone");
    await organiser.context().close();
  });

  it("refuses a buyer with a readable message", async () => {
    await buyer.goto(`${system.base}/organiser/events/${eventId}/sales`);
    const refusal = buyer.locator(".status.error");
    await refusal.waitFor();
    assert.equal(await refusal.textContent(), "Only organisers can see sales.");
    assert.equal(await buyer.locator("#stat-sold").count(), 0, "no figures shown");
    await check(buyer, "sales-03-refused");
    await buyer.goto(`${system.base}/organiser/sales`);
    await refusal.waitFor();
    assert.equal(await refusal.textContent(), "Only organisers can see sales.");
    assert.equal(await buyer.locator(".sales-table").count(), 0);
    await buyer.context().close();
  });
});

describe("the browser console", () => {
  it("logged no errors", () => {
    assert.deepEqual(system.consoleErrors, []);
  });
});
