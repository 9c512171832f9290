// My tickets (ListBookings, newest first as the service returns them): each
// booking with its event, and each ticket of a confirmed booking with a QR
// code drawn here from the ticket's signed code (what scanners read). A
// booking can be cancelled after a confirmation that shows the refund first
// (ticket prices come back, fees do not, as CancelBooking documents).
import { encode } from "uqr";
import { catalog, checkout, describe, isUnauthenticated, money, when } from "../api";
import { h, link, navigate, statusLine, uuid } from "../dom";
import { BookingState, type Booking } from "../gen/boxoffice/checkout/v1/checkout_pb";
import type { Event, SeatMap } from "../gen/boxoffice/catalog/v1/catalog_pb";
import { seatLabel } from "../seatmap";

const SVG = "http://www.w3.org/2000/svg";

const STATE_NAMES: Record<number, string> = {
  [BookingState.PENDING]: "Awaiting payment",
  [BookingState.CONFIRMING]: "Payment in progress",
  [BookingState.CONFIRMED]: "Confirmed",
  [BookingState.CANCELLING]: "Cancelling",
  [BookingState.CANCELLED]: "Cancelled",
  [BookingState.EXPIRED]: "Expired",
};

/** A QR code as one SVG path: a dark square per module, crisp at any size. */
export function qrCode(text: string, label: string): SVGSVGElement {
  const qr = encode(text, { ecc: "M", border: 2 });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${qr.size} ${qr.size}`);
  svg.setAttribute("class", "qr");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("shape-rendering", "crispEdges");
  const background = document.createElementNS(SVG, "rect");
  background.setAttribute("width", String(qr.size));
  background.setAttribute("height", String(qr.size));
  background.setAttribute("fill", "#fff");
  const modules = document.createElementNS(SVG, "path");
  let d = "";
  qr.data.forEach((row, y) => row.forEach((dark, x) => (d += dark ? `M${x} ${y}h1v1h-1z` : "")));
  modules.setAttribute("d", d);
  modules.setAttribute("fill", "#000");
  svg.append(background, modules);
  return svg;
}

function sum(values: { amountMinor: bigint; currencyCode: string }[], currencyCode: string) {
  return { currencyCode, amountMinor: values.reduce((acc, value) => acc + value.amountMinor, 0n) };
}

/** Asks before cancelling, with what comes back; resolves true to go ahead. */
function confirmCancel(booking: Booking, eventTitle: string): Promise<boolean> {
  const currency = booking.total?.currencyCode ?? "";
  const paid = booking.state === BookingState.CONFIRMED;
  const refund = paid ? sum(booking.tickets.map((t) => t.price ?? { amountMinor: 0n, currencyCode: currency }), currency) : undefined;
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": "cancel-heading", "aria-describedby": "cancel-refund" });
    const close = (answer: boolean) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    dialog.append(
      h("h2", { id: "cancel-heading" }, `Cancel your booking for ${eventTitle}?`),
      h(
        "p",
        { id: "cancel-refund" },
        paid
          ? h("span", {}, "You will get back ", h("strong", { id: "refund-amount" }, money(refund)), booking.fees?.amountMinor ? ` (the ticket prices; the ${money(booking.fees)} in fees are not refunded).` : " (the ticket prices).")
          : "Nothing has been charged; your seats go back on sale.",
      ),
      paid ? h("p", {}, `Your ${booking.tickets.length} ticket${booking.tickets.length === 1 ? "" : "s"} will stop working.`) : "",
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: () => close(false) }, "Keep my booking"),
        h("button", { type: "button", class: "danger", id: "confirm-cancel", onclick: () => close(true) }, paid ? `Cancel and refund ${money(refund)}` : "Cancel booking"),
      ),
    );
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      close(false);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export async function ticketsPage(root: HTMLElement, signal: AbortSignal): Promise<void> {
  document.title = "My tickets · boxoffice";
  const status = statusLine();
  const list = h("ul", { class: "bookings", "aria-label": "Bookings" });
  root.append(h("h1", {}, "My tickets"), status.element, list);
  try {
    const answer = await checkout.listBookings({ pageSize: 50 }, { signal });
    const eventIds = [...new Set(answer.bookings.map((b) => b.eventId))];
    const events = new Map<string, Event>();
    const maps = new Map<string, SeatMap>();
    await Promise.all(
      eventIds.map(async (id) => {
        const [event, map] = await Promise.all([
          catalog.getEvent({ id }, { signal }).catch(() => undefined),
          catalog.getSeatMap({ eventId: id }, { signal }).catch(() => undefined),
        ]);
        if (event) events.set(id, event);
        if (map) maps.set(id, map);
      }),
    );

    const item = (booking: Booking): HTMLElement => {
      const event = events.get(booking.eventId);
      const map = maps.get(booking.eventId);
      const id = booking.name.replace(/^bookings\//, "");
      const title = event?.title ?? "Event";
      const cancellable = booking.state === BookingState.CONFIRMED || booking.state === BookingState.PENDING;
      const element: HTMLElement = h(
        "li",
        { class: `booking state-${booking.state}`, "data-booking": id },
        h("h2", {}, event ? link(`/events/${event.id}`, title) : title),
        h("p", { class: "when" }, event ? `${when(event.startTime, event.timeZone)} · ${event.venue?.name ?? ""}` : ""),
        h(
          "p",
          {},
          h("strong", { class: "state" }, STATE_NAMES[booking.state] ?? ""),
          ` · ${money(booking.total)}`,
          booking.state === BookingState.CANCELLED && booking.refunded ? h("span", { class: "refunded" }, ` · refunded ${money(booking.refunded)}`) : null,
        ),
        booking.state === BookingState.CONFIRMED && booking.tickets.length
          ? h(
              "ul",
              { class: "tickets", "aria-label": `Tickets for ${title}` },
              ...booking.tickets.map((ticket) => {
                const seat = seatLabel(map, ticket.seatIndex);
                return h(
                  "li",
                  { class: "ticket" },
                  ticket.code ? qrCode(ticket.code, `QR code for ${seat}`) : null,
                  h("div", {}, h("strong", {}, seat), h("p", {}, money(ticket.price)), h("details", {}, h("summary", {}, "Ticket code"), h("code", {}, ticket.code))),
                );
              }),
            )
          : null,
        h(
          "p",
          { class: "actions" },
          booking.state === BookingState.PENDING ? link(`/checkout/${id}`, "Complete payment") : null,
          cancellable
            ? h(
                "button",
                {
                  type: "button",
                  class: "danger",
                  onclick: async () => {
                    if (!(await confirmCancel(booking, title))) return;
                    status.info("Cancelling…");
                    try {
                      const cancelled = await checkout.cancelBooking({ name: booking.name, idempotencyKey: uuid() }, { signal });
                      element.replaceWith(item(cancelled));
                      status.info(
                        cancelled.refunded?.amountMinor ? `Booking cancelled: ${money(cancelled.refunded)} is on its way back to your card.` : "Booking cancelled.",
                      );
                    } catch (error) {
                      if (!signal.aborted) status.error(describe(error));
                    }
                  },
                },
                "Cancel booking",
              )
            : null,
        ),
      );
      return element;
    };
    list.replaceChildren(...answer.bookings.map(item));
    if (answer.bookings.length === 0) list.append(h("li", { class: "empty" }, "No bookings yet. ", link("/", "Find an event")));
  } catch (error) {
    if (signal.aborted) return;
    if (isUnauthenticated(error)) return navigate(`/login?next=${encodeURIComponent("/tickets")}`, { replace: true });
    status.error(describe(error));
  }
}
