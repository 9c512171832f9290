// Discounts on the checkout page, in a real browser against a `boxoffice up`
// of this file's own (see harness.mjs): an organiser's promo code (created
// through the API over gRPC-web, as an integrator would) is applied to a
// pending booking and the summary shows the server's discount line and
// total; an unknown code is refused in words a buyer understands and
// changes nothing; the code is removed and the total is back; the buyer's
// loyalty points are shown and spending more than they have is refused.
// The waitlist offer page (where the offer mail links): two buyers join a
// sold-out event's waitlist there; a cancellation brings the place back;
// the first sees the offer (event, seat, price, time left) and declines it,
// the second then sees it, continues into checkout and pays.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { System, accessibilityProblems, shot, suffix, waitFor } from "./harness.mjs";

const system = new System("commerce-");
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

/** One unary gRPC-web call with a protobuf body; answers the grpc-status
 * and the response message's bytes. */
async function grpcWeb(path, token, message) {
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  const response = await fetch(`${system.base}${path}`, {
    method: "POST",
    headers: {
      "content-type": "application/grpc-web+proto",
      "x-grpc-web": "1",
      authorization: `Bearer ${token}`,
    },
    body: frame,
  });
  const body = new Uint8Array(await response.arrayBuffer());
  let status = response.headers.get("grpc-status");
  let data = new Uint8Array();
  for (let at = 0; at + 5 <= body.length; ) {
    const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    const payload = body.subarray(at + 5, at + 5 + length);
    if (body[at] & 0x80) status = new TextDecoder().decode(payload).match(/grpc-status:\s*(\d+)/i)?.[1] ?? status;
    else data = payload;
    at += 5 + length;
  }
  return { status: status === null ? -1 : Number(status), data };
}

/** Every length-delimited field (strings, messages) of a message, by
 * field number, as bytes. */
function fields(bytes) {
  const reader = new BinaryReader(bytes);
  const found = new Map();
  while (reader.pos < reader.len) {
    const [number, type] = reader.tag();
    if (type === 2) {
      const value = reader.bytes();
      found.set(number, [...(found.get(number) ?? []), value]);
    } else reader.skip(type);
  }
  return found;
}

const text = (bytes) => new TextDecoder().decode(bytes);

function timestamp(secondsFromNow) {
  return new BinaryWriter().uint32(8).int64(BigInt(Math.floor(Date.now() / 1000) + secondsFromNow)).finish();
}

/** An admin creates a one-place standing venue and an event there in 30
 * days at 25.00 GBP, and publishes it; answers the event's id. */
async function oneSeatEvent(token, title) {
  const address = new BinaryWriter().uint32(10).string("1 Quay Street").uint32(18).string("Leeds").uint32(34).string("LS1 4DL").uint32(42).string("GB").finish();
  const section = new BinaryWriter().uint32(10).string("Floor").uint32(16).uint32(2).uint32(24).uint32(1).finish();
  const venueRequest = new BinaryWriter().uint32(10).string(`Tiny Room ${suffix}`).uint32(18).bytes(address).uint32(34).string("Europe/London").uint32(42).bytes(section).finish();
  const venue = await grpcWeb("/boxoffice.catalog.v1.CatalogService/CreateVenue", token, venueRequest);
  assert.equal(venue.status, 0, "the venue is created");
  const venueFields = fields(venue.data);
  const venueId = text(venueFields.get(1)[0]);
  const sectionId = text(fields(venueFields.get(7)[0]).get(1)[0]);
  const price = new BinaryWriter().uint32(10).string("GBP").uint32(16).int64(2500n).finish();
  const tier = new BinaryWriter().uint32(18).string("Floor").uint32(26).bytes(price).uint32(34).string(sectionId).finish();
  const event = new BinaryWriter()
    .uint32(18).string(title)
    .uint32(32).uint32(1)
    .uint32(50).string(venueId)
    .uint32(82).bytes(timestamp(30 * 86_400))
    .uint32(90).bytes(timestamp(30 * 86_400 + 3 * 3_600))
    .uint32(114).bytes(tier)
    .finish();
  const created = await grpcWeb("/boxoffice.catalog.v1.CatalogService/CreateEvent", token, new BinaryWriter().uint32(10).bytes(event).finish());
  assert.equal(created.status, 0, "the event is created");
  const eventId = text(fields(created.data).get(1)[0]);
  const published = await grpcWeb("/boxoffice.catalog.v1.CatalogService/PublishEvent", token, new BinaryWriter().uint32(10).string(eventId).finish());
  assert.equal(published.status, 0, "the event is published");
  // On sale once inventory has built its tickets from the published event
  // (behind the demo catalogue's hundreds of events on a fresh start).
  await waitFor("the event on sale", 180_000, async () => {
    const availability = await grpcWeb("/boxoffice.inventory.v1.InventoryService/GetAvailability", token, new BinaryWriter().uint32(10).string(eventId).finish());
    if (availability.status !== 0) throw new Error(`GetAvailability answered status ${availability.status}`);
    const reader = new BinaryReader(availability.data);
    while (reader.pos < reader.len) {
      const [number, type] = reader.tag();
      if (number === 6 && type === 0) return reader.bool();
      reader.skip(type);
    }
    throw new Error(`not on sale yet (${availability.data.length} bytes)`);
  });
  return eventId;
}

async function register(page, name, next) {
  await page.goto(`${system.base}/register?next=${encodeURIComponent(next)}`);
  await page.getByLabel("Your name").fill(name);
  await page.getByLabel("Email").fill(`${name.toLowerCase().replaceAll(" ", "-")}-${suffix}@example.com`);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(`${system.base}${next}`);
}

/** "£12.34"-style text to minor units. */
function minor(text) {
  const digits = text.replace(/[^\d.]/g, "");
  return Math.round(Number(digits) * 100);
}

let adminToken;

/** The demo organiser's token, from a login in the browser (once). */
async function organiserToken() {
  if (adminToken) return adminToken;
  const organiser = await system.page("organiser");
  await organiser.goto(`${system.base}/login?next=/organiser`);
  await logIn(organiser, "admin@demo.boxoffice.dev");
  // Signed in once the session is stored (the login page's own URL ends in
  // "/organiser" too, in its `next`).
  await organiser.waitForFunction(() => localStorage.getItem("boxoffice.session") !== null);
  adminToken = await organiser.evaluate(() => JSON.parse(localStorage.getItem("boxoffice.session")).token);
  await organiser.context().close();
  return adminToken;
}

describe("discounts on the checkout page", () => {
  const code = `SPRING${suffix}`.toUpperCase().slice(0, 32);
  let buyer;
  let fullTotal;

  it("an organiser creates a 20% promo code for every event", async () => {
    await organiserToken();
    // CreatePromoCodeRequest { promo_code: { code, kind: PERCENT_OFF, percent_off: 20 } }
    const promo = new BinaryWriter().uint32(18).string(code).uint32(40).uint32(1).uint32(48).uint32(20).finish();
    const request = new BinaryWriter().uint32(10).bytes(promo).finish();
    const created = await grpcWeb("/boxoffice.checkout.v1.CheckoutService/CreatePromoCode", adminToken, request);
    assert.equal(created.status, 0, "the code is created");
  });

  it("applies the code: the server's discount line and total are shown", async () => {
    buyer = await system.page("buyer");
    await buyer.goto(`${system.base}/login?next=/`);
    await logIn(buyer, "customer@demo.boxoffice.dev");
    await buyer.waitForURL(`${system.base}/`);
    await buyer.locator(".cards .card a").first().click();
    await buyer.waitForURL(/\/events\/[0-9a-f-]{36}$/);
    await buyer.locator(".live[data-state=live]").waitFor();
    await buyer.getByLabel("Tickets").fill("2");
    await buyer.getByRole("button", { name: "Find best seats" }).click();
    await buyer.waitForURL(/\/checkout\/[0-9a-f-]{36}$/);
    await buyer.locator("#total").waitFor();
    fullTotal = minor(await buyer.locator("#total").textContent());
    assert.ok(fullTotal > 0);
    await buyer.locator("#points-balance", { hasText: "points" }).waitFor();
    await check(buyer, "commerce-01-checkout-discounts");

    await buyer.getByLabel("Promo code").fill(code.toLowerCase());
    await buyer.getByRole("button", { name: "Apply" }).click();
    await buyer.locator("#promo-applied", { hasText: `Code ${code} applied.` }).waitFor();
    const discounted = minor(await buyer.locator("#total").textContent());
    const promoLine = buyer.locator(".summary tbody tr", { hasText: `promo code ${code}` });
    assert.equal(await promoLine.count(), 1, `a discount line: ${await buyer.locator(".summary").textContent()}`);
    const off = minor(await promoLine.locator("td.num").textContent());
    assert.ok(off > 0 && (await promoLine.locator("td.num").textContent()).includes("-"), "the line takes money off");
    assert.equal(discounted, fullTotal - off, `the total is the server's: ${fullTotal} less ${off}`);
    assert.equal(minor(await buyer.locator("#pay").textContent()), discounted, "the pay button asks for the new total");
    // The page shows what the server says: GetBooking agrees after a reload.
    await buyer.reload();
    await buyer.locator("#promo-applied", { hasText: `Code ${code} applied.` }).waitFor();
    assert.equal(minor(await buyer.locator("#total").textContent()), discounted);
    await check(buyer, "commerce-02-code-applied");
  });

  it("refuses an unknown code in the buyer's words and changes nothing", async () => {
    const before = await buyer.locator("#total").textContent();
    await buyer.getByLabel("Promo code").fill("NO-SUCH-CODE");
    await buyer.getByRole("button", { name: "Apply" }).click();
    await buyer.locator("#discount-status.error", { hasText: "That promo code does not exist." }).waitFor();
    assert.equal(await buyer.locator("#total").textContent(), before);
    assert.equal(await buyer.locator("#promo-applied").textContent(), `Code ${code} applied.`, "the applied code stays");
    // More points than the buyer has.
    await buyer.getByLabel("Loyalty points to spend").fill("99999999");
    await buyer.getByRole("button", { name: "Use points" }).click();
    await buyer.locator("#discount-status.error", { hasText: "You do not have that many loyalty points." }).waitFor();
    assert.equal(await buyer.locator("#total").textContent(), before);
    await check(buyer, "commerce-03-code-refused");
  });

  it("removes the code: the total is back to the full price and it can be paid", async () => {
    await buyer.getByRole("button", { name: "Remove code" }).click();
    await buyer.locator("#discount-status", { hasText: "The promo code was removed." }).waitFor();
    assert.equal(minor(await buyer.locator("#total").textContent()), fullTotal);
    assert.equal(await buyer.locator("#promo-applied").textContent(), "");
    assert.equal(await buyer.locator(".summary tbody tr", { hasText: "promo code" }).count(), 0, "the discount line is gone");
    assert.equal(await buyer.getByRole("button", { name: "Remove code" }).isHidden(), true);
    await buyer.locator("#pay").click();
    await buyer.locator("#confirmed").waitFor();
    assert.equal(minor(await buyer.locator("#total").textContent()), fullTotal, "charged the full price");
  });
});

describe("the waitlist offer page", () => {
  it("shows the offer; the first declines, the next continues into checkout and pays", async () => {
    const eventId = await oneSeatEvent(await organiserToken(), `Tiny Gig ${suffix}`);
    const eventPath = `/events/${eventId}`;
    const waitlistPath = `${eventPath}/waitlist`;
    // The one place is bought.
    const holder = await system.page("holder");
    await register(holder, "Place Holder", eventPath);
    await holder.locator(".live[data-state=live]").waitFor();
    await holder.getByLabel("Tickets").fill("1");
    await holder.getByRole("button", { name: "Find best seats" }).click();
    await holder.waitForURL(/\/checkout\/[0-9a-f-]{36}$/);
    await holder.locator("#pay").click();
    await holder.locator("#confirmed").waitFor();

    // Two buyers join the waitlist on its page, in order.
    const first = await system.page("first in line");
    await register(first, "First Inline", waitlistPath);
    await first.locator("#waitlist-state", { hasText: "not on this event's waitlist" }).waitFor();
    await first.getByLabel("Places").fill("1");
    await first.getByRole("button", { name: "Join the waitlist" }).click();
    await first.locator("#waitlist-state", { hasText: "You are number 1 in line for 1 place." }).waitFor();
    await check(first, "commerce-04-waitlist-waiting");
    const second = await system.page("second in line");
    await register(second, "Second Inline", waitlistPath);
    await second.getByRole("button", { name: "Join the waitlist" }).click();
    await second.locator("#waitlist-state", { hasText: "You are number 2 in line" }).waitFor();

    // The holder cancels: the place is offered to the first in line, whose
    // page shows it (as the mail's link opens it).
    await holder.getByRole("link", { name: "My tickets", exact: true }).click();
    const booking = holder.locator(".booking").first();
    await booking.getByRole("button", { name: "Cancel booking" }).click();
    await holder.getByRole("dialog").getByRole("button", { name: /^Cancel and refund/ }).click();
    await booking.locator(".state", { hasText: "Cancelled" }).waitFor();
    await first.locator("#waitlist-state", { hasText: "held for you" }).waitFor({ timeout: 30_000 });
    assert.equal(await first.locator("#waitlist-event").textContent().then((t) => t.startsWith(`Tiny Gig ${suffix} — `)), true);
    assert.equal(await first.locator("#offer-seats tbody tr").count(), 1, "one seat offered");
    assert.equal(minor(await first.locator("#offer-total").textContent()), 2500, "the price the offer's hold shows");
    assert.match(await first.locator("#offer-time-left").textContent(), /^This offer is yours for \d+:\d\d more\.$/);
    await check(first, "commerce-05-waitlist-offer");
    await first.getByRole("button", { name: "Decline the offer" }).click();
    await first.locator(".status", { hasText: "You declined the offer" }).waitFor();

    // The next in line gets it, continues into the normal checkout and pays.
    await second.locator("#waitlist-state", { hasText: "held for you" }).waitFor({ timeout: 30_000 });
    assert.equal(minor(await second.locator("#offer-total").textContent()), 2500);
    await second.getByRole("button", { name: "Continue to payment" }).click();
    await second.waitForURL(/\/checkout\/[0-9a-f-]{36}$/);
    assert.equal(minor(await second.locator("#total").textContent()), 2500 + 150, "the offer's price plus the fee");
    await second.locator("#pay").click();
    await second.locator("#confirmed").waitFor();
    await second.goto(`${system.base}${waitlistPath}`);
    await second.locator("#waitlist-state", { hasText: "You bought the seats offered to you." }).waitFor({ timeout: 30_000 });
    assert.deepEqual(system.consoleErrors, []);
  });
});
