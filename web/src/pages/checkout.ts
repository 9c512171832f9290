// The booking summary (GetBooking) with the hold's countdown, a promo code
// and loyalty points to take off it (ApplyPromoCode / RemovePromoCode /
// ApplyLoyaltyPoints: the server reprices and the summary shows its lines),
// payment with a test card (ConfirmBooking), and the confirmation with the
// tickets.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { catalog, checkout, describe, isUnauthenticated, money, when } from "../api";
import { field, h, link, navigate, statusLine, uuid } from "../dom";
import { seatLabel } from "../seatmap";
import { qrCode } from "./bookings";
import { BookingState, LineItemKind, type Booking } from "../gen/boxoffice/checkout/v1/checkout_pb";

const TEST_CARDS: [string, string][] = [
  ["tok_visa", "Visa test card ending 4242 (approved)"],
  ["tok_chargeDeclinedInsufficientFunds", "Test card: declined, insufficient funds"],
  ["tok_chargeDeclinedExpiredCard", "Test card: declined, expired"],
];

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => window.setTimeout(resolve, ms));
}

export async function checkoutPage(root: HTMLElement, signal: AbortSignal, id: string): Promise<void> {
  document.title = "Checkout · boxoffice";
  const name = `bookings/${id}`;
  const status = statusLine();
  root.append(status.element);
  let booking: Booking;
  try {
    booking = await checkout.getBooking({ name }, { signal });
  } catch (error) {
    if (signal.aborted) return;
    if (isUnauthenticated(error)) return navigate(`/login?next=${encodeURIComponent(location.pathname)}`);
    status.error(describe(error));
    return;
  }
  const [event, map] = await Promise.all([
    catalog.getEvent({ id: booking.eventId }, { signal }).catch(() => undefined),
    catalog.getSeatMap({ eventId: booking.eventId }, { signal }).catch(() => undefined),
  ]);

  const body = h("div", { class: "checkout" });
  root.append(body);

  const renderSummary = (current: Booking) => {
    const rows = current.lineItems.map((item) =>
      h("tr", {}, h("td", {}, item.kind === LineItemKind.TICKET ? seatLabel(map, item.seatIndex) : item.description || "Fees"), h("td", { class: "num" }, money(item.amount))),
    );
    return h(
      "table",
      { class: "summary" },
      h("caption", {}, "Order summary"),
      h("tbody", {}, ...rows),
      h(
        "tfoot",
        {},
        h("tr", {}, h("th", { scope: "row" }, "Subtotal"), h("td", { class: "num" }, money(current.subtotal))),
        h("tr", {}, h("th", { scope: "row" }, "Fees"), h("td", { class: "num" }, money(current.fees))),
        h("tr", { class: "grand" }, h("th", { scope: "row" }, "Total"), h("td", { class: "num", id: "total" }, money(current.total))),
      ),
    );
  };

  const renderConfirmed = (current: Booking) => {
    document.title = "Booked · boxoffice";
    body.replaceChildren(
      h("h1", { id: "confirmed" }, "You're going!"),
      h("p", {}, event ? `${event.title} — ${when(event.startTime, event.timeZone)}` : ""),
      renderSummary(current),
      h("h2", {}, "Your tickets"),
      h(
        "ul",
        { class: "tickets" },
        ...current.tickets.map((ticket) => {
          const seat = seatLabel(map, ticket.seatIndex);
          return h("li", { class: "ticket" }, ticket.code ? qrCode(ticket.code, `QR code for ${seat}`) : null, h("div", {}, h("strong", {}, seat), h("p", {}, money(ticket.price))));
        }),
      ),
      h("p", {}, link("/tickets", "See all my tickets")),
    );
  };

  if (booking.state === BookingState.CONFIRMED) return renderConfirmed(booking);
  if (booking.state !== BookingState.PENDING && booking.state !== BookingState.CONFIRMING) {
    body.replaceChildren(h("h1", {}, "This order is closed"), renderSummary(booking), h("p", {}, link("/", "Find other events")));
    return;
  }

  const countdown = h("p", { class: "countdown", "aria-live": "off" });
  const expires = booking.expireTime ? timestampDate(booking.expireTime).getTime() : 0;
  const tick = () => {
    const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
    countdown.textContent = expires
      ? left > 0
        ? `Your seats are held for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`
        : "Your hold has run out."
      : "";
  };
  tick();
  const timer = window.setInterval(tick, 1000);
  signal.addEventListener("abort", () => window.clearInterval(timer));

  const card = h(
    "select",
    { id: "card", name: "card" },
    ...TEST_CARDS.map(([token, label]) => h("option", { value: token }, label)),
  );
  const pay = h("button", { type: "submit", class: "primary", id: "pay" }, `Pay ${money(booking.total)}`);
  const idempotencyKey = uuid();
  let summary = renderSummary(booking);
  // The server's repriced booking replaces the summary and the amount to pay.
  const repriced = (current: Booking) => {
    booking = current;
    const next = renderSummary(current);
    summary.replaceWith(next);
    summary = next;
    pay.textContent = `Pay ${money(current.total)}`;
  };
  const discounts = discountForms(name, booking, signal, repriced);
  body.replaceChildren(
    h("h1", {}, "Checkout"),
    h("p", {}, event ? `${event.title} — ${when(event.startTime, event.timeZone)}` : ""),
    countdown,
    summary,
    discounts,
    h(
      "form",
      {
        class: "pay",
        onsubmit: async (e: globalThis.Event) => {
          e.preventDefault();
          pay.disabled = true;
          status.info("Paying…");
          try {
            let current = await checkout.confirmBooking(
              { name, paymentMethod: { token: card.value }, idempotencyKey },
              { signal },
            );
            // A payment the provider has not settled yet: wait for it.
            const deadline = Date.now() + 30_000;
            while (current.state === BookingState.CONFIRMING && Date.now() < deadline && !signal.aborted) {
              await sleep(500);
              current = await checkout.getBooking({ name }, { signal });
            }
            if (current.state === BookingState.CONFIRMED) {
              status.clear();
              window.clearInterval(timer);
              renderConfirmed(current);
            } else {
              status.error(current.failureReason ? `Payment failed: ${current.failureReason}` : "The payment did not go through.");
              pay.disabled = false;
            }
          } catch (error) {
            if (signal.aborted) return;
            status.error(describe(error));
            pay.disabled = false;
          }
        },
      },
      h("label", { for: "card" }, "Pay with"),
      card,
      pay,
    ),
  );
}

/** The promo code and loyalty points forms of a pending booking: each call
 * answers the booking repriced by the server (handed to `repriced`); a
 * refusal is shown in the buyer's words and changes nothing. */
function discountForms(name: string, initial: Booking, signal: AbortSignal, repriced: (booking: Booking) => void): HTMLElement {
  const status = statusLine();
  status.element.id = "discount-status";
  const codeInput = h("input", { id: "promo-code", name: "promo-code", autocomplete: "off", maxlength: 64, required: true });
  const apply = h("button", { type: "submit", id: "apply-promo" }, "Apply");
  const applied = h("p", { id: "promo-applied" });
  const remove = h("button", { type: "button", id: "remove-promo", class: "link" }, "Remove code");
  const pointsInput = h("input", { id: "points", name: "points", type: "number", min: 0, step: 1, value: String(initial.loyaltyPointsSpent) });
  const usePoints = h("button", { type: "submit", id: "apply-points" }, "Use points");
  const balance = h("small", { id: "points-balance", class: "hint" });

  const show = (current: Booking) => {
    applied.textContent = current.promoCode ? `Code ${current.promoCode} applied.` : "";
    remove.hidden = !current.promoCode;
    pointsInput.value = String(current.loyaltyPointsSpent);
  };
  const call = async (button: HTMLButtonElement, work: () => Promise<Booking>, done: string) => {
    button.disabled = true;
    status.info("Updating your order…");
    try {
      const current = await work();
      repriced(current);
      show(current);
      status.info(done);
    } catch (error) {
      if (signal.aborted) return;
      status.error(describe(error));
    } finally {
      button.disabled = false;
    }
  };
  remove.addEventListener("click", () =>
    void call(remove, () => checkout.removePromoCode({ name }, { signal }), "The promo code was removed."),
  );
  show(initial);
  void checkout
    .getLoyalty({}, { signal })
    .then((loyalty) => {
      balance.textContent = `You have ${loyalty.pointsBalance} points.`;
    })
    .catch(() => undefined);

  return h(
    "section",
    { class: "discounts", "aria-labelledby": "discounts-title" },
    h("h2", { id: "discounts-title" }, "Discounts"),
    h(
      "form",
      {
        id: "promo-form",
        onsubmit: (e: globalThis.Event) => {
          e.preventDefault();
          const code = codeInput.value.trim();
          if (!code) return;
          void call(apply, () => checkout.applyPromoCode({ name, code }, { signal }), "The promo code was applied.");
        },
      },
      field("Promo code", codeInput),
      apply,
    ),
    applied,
    remove,
    h(
      "form",
      {
        id: "points-form",
        onsubmit: (e: globalThis.Event) => {
          e.preventDefault();
          const points = Number(pointsInput.value || "0");
          if (!Number.isInteger(points) || points < 0) {
            status.error("Enter a whole number of points, 0 or more.");
            return;
          }
          void call(usePoints, () => checkout.applyLoyaltyPoints({ name, points: BigInt(points) }, { signal }), points ? "Your points were applied." : "No points are spent on this order.");
        },
      },
      field("Loyalty points to spend", pointsInput),
      balance,
      usePoints,
    ),
    status.element,
  );
}
