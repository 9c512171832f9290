// Discounts on the checkout page, in a real browser against a `boxoffice up`
// of this file's own (see harness.mjs): an organiser's promo code (created
// through the API over gRPC-web, as an integrator would) is applied to a
// pending booking and the summary shows the server's discount line and
// total; an unknown code is refused in words a buyer understands and
// changes nothing; the code is removed and the total is back; the buyer's
// loyalty points are shown and spending more than they have is refused.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { System, accessibilityProblems, shot, suffix } from "./harness.mjs";

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
    assert.deepEqual(system.consoleErrors, []);
  });
});
