// My bookings (ListBookings), newest first as the service returns them, with
// the event and every ticket's seat.
import { catalog, checkout, describe, isUnauthenticated, money, when } from "../api";
import { h, link, navigate, statusLine } from "../dom";
import { BookingState } from "../gen/boxoffice/checkout/v1/checkout_pb";
import type { Event, SeatMap } from "../gen/boxoffice/catalog/v1/catalog_pb";
import { seatLabel } from "../seatmap";

const STATE_NAMES: Record<number, string> = {
  [BookingState.PENDING]: "Awaiting payment",
  [BookingState.CONFIRMING]: "Payment in progress",
  [BookingState.CONFIRMED]: "Confirmed",
  [BookingState.CANCELLING]: "Cancelling",
  [BookingState.CANCELLED]: "Cancelled",
  [BookingState.EXPIRED]: "Expired",
};

export async function bookingsPage(root: HTMLElement, signal: AbortSignal): Promise<void> {
  document.title = "My bookings · boxoffice";
  const status = statusLine();
  const list = h("ul", { class: "bookings", "aria-label": "Bookings" });
  root.append(h("h1", {}, "My bookings"), status.element, list);
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
    list.replaceChildren(
      ...answer.bookings.map((booking) => {
        const event = events.get(booking.eventId);
        const id = booking.name.replace(/^bookings\//, "");
        return h(
          "li",
          { class: `booking state-${booking.state}` },
          h("h2", {}, event ? link(`/events/${event.id}`, event.title) : "Event"),
          h("p", { class: "when" }, event ? when(event.startTime, event.timeZone) : ""),
          h("p", {}, h("strong", { class: "state" }, STATE_NAMES[booking.state] ?? ""), ` · ${money(booking.total)}`),
          booking.tickets.length
            ? h("ul", { class: "tickets" }, ...booking.tickets.map((t) => h("li", {}, seatLabel(maps.get(booking.eventId), t.seatIndex), h("code", {}, t.code))))
            : null,
          booking.state === BookingState.PENDING ? h("p", {}, link(`/checkout/${id}`, "Complete payment")) : null,
        );
      }),
    );
    if (answer.bookings.length === 0) list.append(h("li", { class: "empty" }, "No bookings yet. ", link("/", "Find an event")));
  } catch (error) {
    if (signal.aborted) return;
    if (isUnauthenticated(error)) return navigate(`/login?next=${encodeURIComponent("/bookings")}`);
    status.error(describe(error));
  }
}
