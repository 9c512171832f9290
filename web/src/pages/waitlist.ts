// The buyer's place on a sold-out event's waitlist, where the offer mail
// links (/events/{id}/waitlist): while waiting, the place in line (and a way
// to leave); with an offer, the event, the offered seats, their price from
// the offer's hold (GetHold: what checkout charges) and the time left, then
// either on into the normal booking and payment (CreateBooking on the
// offer's hold, then the checkout page) or a decline (LeaveWaitlist, which
// gives the seats to the next in line). Not in line: join it for a number
// of places (the server says when seats are still on sale).
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { catalog, checkout, describe, inventory, isUnauthenticated, money, reasonOf, session, waitlist, when } from "../api";
import { field, h, link, navigate, statusLine, uuid } from "../dom";
import { seatLabel } from "../seatmap";
import { WaitlistEntryState, type WaitlistEntry } from "../gen/boxoffice/inventory/v1/waitlist_pb";

const POLL_MS = 3_000;

function timeLeft(until: number): string {
  const left = Math.max(0, Math.round((until - Date.now()) / 1000));
  if (left === 0) return "This offer has run out.";
  return `This offer is yours for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} more.`;
}

export async function waitlistPage(root: HTMLElement, signal: AbortSignal, eventId: string): Promise<void> {
  document.title = "Waitlist · boxoffice";
  const here = `/events/${eventId}/waitlist`;
  if (!session()) return navigate(`/login?next=${encodeURIComponent(here)}`, { replace: true });
  const status = statusLine();
  const title = h("p", { class: "waitlist-event", id: "waitlist-event" });
  const body = h("div", { id: "waitlist-body" }, h("p", {}, "Looking up your place…"));
  root.append(
    h("section", { class: "waitlist", "aria-labelledby": "waitlist-heading" }, h("h1", { id: "waitlist-heading" }, "Waitlist"), title, body, status.element, h("p", {}, link(`/events/${eventId}`, "← Back to the event"))),
  );
  const [event, map] = await Promise.all([
    catalog.getEvent({ id: eventId }, { signal }).catch(() => undefined),
    catalog.getSeatMap({ eventId }, { signal }).catch(() => undefined),
  ]);
  if (event) {
    title.textContent = `${event.title} — ${when(event.startTime, event.timeZone)}`;
    document.title = `Waitlist: ${event.title} · boxoffice`;
  }

  let timer = 0;
  signal.addEventListener("abort", () => window.clearTimeout(timer));
  // What is shown, so that polling re-renders only when the entry changed
  // (an offer bought or run out, a place moved up).
  let shown = "";
  const refresh = async () => {
    window.clearTimeout(timer);
    try {
      const entry = await waitlist.getWaitlistEntry({ eventId }, { signal });
      const key = `${entry.state}:${entry.position}:${entry.offer?.hold ?? ""}`;
      if (key === shown) return poll();
      shown = key;
      await show(entry);
    } catch (error) {
      if (signal.aborted) return;
      if (isUnauthenticated(error)) return navigate(`/login?next=${encodeURIComponent(here)}`);
      if (reasonOf(error) === "WAITLIST_ENTRY_NOT_FOUND") {
        shown = "";
        return showJoin();
      }
      status.error(describe(error));
    }
  };
  const poll = () => {
    if (!signal.aborted) timer = window.setTimeout(() => void refresh(), POLL_MS);
  };

  const leaveButton = (label: string, id: string, done: string) => {
    const button = h("button", { type: "button", id }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await waitlist.leaveWaitlist({ eventId }, { signal });
        status.info(done);
        await refresh();
      } catch (error) {
        if (signal.aborted) return;
        status.error(describe(error));
        button.disabled = false;
      }
    });
    return button;
  };

  const showJoin = () => {
    const quantity = h("input", { id: "waitlist-quantity", type: "number", min: 1, max: 10, step: 1, value: "1", required: true });
    const join = h("button", { type: "submit", class: "primary", id: "join-waitlist" }, "Join the waitlist");
    body.replaceChildren(
      h("p", { id: "waitlist-state" }, "You are not on this event's waitlist. When it is sold out, join it and we will offer you seats that come back, in the order people joined."),
      h(
        "form",
        {
          onsubmit: async (e: globalThis.Event) => {
            e.preventDefault();
            join.disabled = true;
            try {
              await waitlist.joinWaitlist({ eventId, quantity: Number(quantity.value) }, { signal });
              status.clear();
              await refresh();
            } catch (error) {
              if (signal.aborted) return;
              status.error(describe(error));
              join.disabled = false;
            }
          },
        },
        field("Places", quantity),
        join,
      ),
    );
  };

  const show = async (entry: WaitlistEntry) => {
    switch (entry.state) {
      case WaitlistEntryState.WAITING:
        body.replaceChildren(
          h("p", { id: "waitlist-state" }, `You are number ${entry.position} in line for ${entry.quantity} place${entry.quantity === 1 ? "" : "s"}.`),
          h("p", { class: "hint" }, "We will email you when seats come back; this page updates by itself."),
          leaveButton("Leave the waitlist", "leave-waitlist", "You left the waitlist."),
        );
        return poll();
      case WaitlistEntryState.OFFERED:
        return showOffer(entry);
      case WaitlistEntryState.FULFILLED:
        body.replaceChildren(h("p", { id: "waitlist-state" }, "You bought the seats offered to you."), h("p", {}, link("/tickets", "See my tickets")));
        return;
      case WaitlistEntryState.LAPSED:
        body.replaceChildren(h("p", { id: "waitlist-state" }, "Your offer ran out and passed to the next in line."));
        return;
      default:
        return showJoin();
    }
  };

  const showOffer = async (entry: WaitlistEntry) => {
    const offer = entry.offer;
    if (!offer) return poll();
    const hold = await inventory.getHold({ name: offer.hold }, { signal }).catch(() => undefined);
    const until = offer.expireTime ? timestampDate(offer.expireTime).getTime() : 0;
    const countdown = h("p", { class: "countdown", id: "offer-time-left" }, timeLeft(until));
    const tick = window.setInterval(() => {
      countdown.textContent = timeLeft(until);
    }, 1000);
    signal.addEventListener("abort", () => window.clearInterval(tick));
    const seats = (hold?.seats.length ? hold.seats.map((seat) => ({ index: seat.seatIndex, price: seat.price })) : offer.seatIndexes.map((index) => ({ index, price: undefined })));
    const proceed = h("button", { type: "button", class: "primary", id: "take-offer" }, "Continue to payment");
    proceed.addEventListener("click", async () => {
      proceed.disabled = true;
      status.info("Reserving your order…");
      try {
        const booking = await checkout.createBooking({ hold: offer.hold, idempotencyKey: uuid() }, { signal });
        window.clearInterval(tick);
        navigate(`/checkout/${booking.name.split("/").pop()}`);
      } catch (error) {
        if (signal.aborted) return;
        status.error(describe(error));
        proceed.disabled = false;
      }
    });
    body.replaceChildren(
      h("p", { id: "waitlist-state" }, "Seats came back and are held for you."),
      h(
        "table",
        { class: "summary", id: "offer-seats" },
        h("caption", {}, "Your offer"),
        h("tbody", {}, ...seats.map((seat) => h("tr", {}, h("td", {}, seatLabel(map, seat.index)), h("td", { class: "num" }, money(seat.price))))),
        h("tfoot", {}, h("tr", { class: "grand" }, h("th", { scope: "row" }, "Tickets"), h("td", { class: "num", id: "offer-total" }, money(hold?.totalPrice)))),
      ),
      h("p", { class: "hint" }, "Fees and any discounts are shown on the next page, before you pay."),
      countdown,
      h("div", { class: "actions" }, proceed, leaveButton("Decline the offer", "decline-offer", "You declined the offer; the seats go to the next in line.")),
    );
    // Bought (here or in another tab) or run out: the page follows.
    poll();
  };

  await refresh();
}
