// The event page: details, performers, prices, and the seat map from
// GetSeatMap kept live by WatchAvailability (a snapshot, then every change;
// on a dropped stream it resumes from the last cursor). Picking seats, or
// asking for the best available ones, holds them (HoldSeats) and opens a
// booking (CreateBooking) whose summary is the checkout page. While the
// event's waiting room is on, a hold needs the admission token the queue
// page got from WatchQueue; without one the buyer is sent to the queue.
import { admission, catalog, checkout, describe, inventory, isAdmin, money, reasonOf, session, setAdmission, when } from "../api";
import { h, link, navigate, sleep, statusLine, uuid } from "../dom";
import { EventStatus, SectionKind, type Event, type SeatMap } from "../gen/boxoffice/catalog/v1/catalog_pb";
import { ChangeKind } from "../gen/boxoffice/inventory/v1/inventory_pb";
import { AVAILABLE, HELD, SOLD, SeatMapView, type SeatInfo } from "../seatmap";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HoldSeatsRequestSchema } from "../gen/boxoffice/inventory/v1/inventory_pb";

const MAX_PICK = 10;
const QUEUE_REASONS = new Set(["ADMISSION_REQUIRED", "ADMISSION_TOKEN_INVALID", "ADMISSION_TOKEN_EXPIRED"]);

export async function eventPage(root: HTMLElement, signal: AbortSignal, eventId: string): Promise<void> {
  const status = statusLine();
  root.append(status.element);
  let event: Event;
  let map: SeatMap;
  try {
    [event, map] = await Promise.all([
      catalog.getEvent({ id: eventId }, { signal }),
      catalog.getSeatMap({ eventId }, { signal }),
    ]);
  } catch (error) {
    if (!signal.aborted) status.error(describe(error));
    return;
  }
  document.title = `${event.title} · boxoffice`;

  const tierIndex = new Map(map.priceTiers.map((tier, i) => [tier.id, i]));
  const tierOf = new Map(map.priceTiers.map((tier) => [tier.id, tier]));
  // What a seat costs now: a dynamically priced tier moves with its sales
  // (a hold locks the price of the moment it is taken).
  const priceOf = (tierId: string | undefined) => {
    const tier = tierOf.get(tierId ?? "");
    return tier?.currentPrice ?? tier?.price;
  };
  const tierClass = (id: string) => `tier-${Math.min(tierIndex.get(id) ?? 0, 5)}`;

  const picked = new Set<number>();
  // Until the first snapshot says otherwise; a cancelled event never sells.
  let onSale = event.status !== EventStatus.CANCELLED;
  const storageKey = `boxoffice.picked.${eventId}`;
  const pickedList = h("ul", { class: "picked-list", "aria-label": "Seats you picked" });
  const total = h("p", { class: "total" });
  const holdButton = h("button", { type: "button", class: "primary", id: "hold" }, "Hold seats");
  const live = h("p", { class: "live", "aria-live": "polite" }, "Connecting to live availability…");
  const availableCount = h("span", { id: "available-count" });

  // Measured from here to the first frame painted after the map is in the
  // page (the browser test reports it as "seatmap-draw").
  performance.mark("seatmap-start");
  const view = new SeatMapView(map, tierClass, (seat) => toggle(seat));
  performance.measure("seatmap-build", "seatmap-start");

  function refreshPicked(): void {
    pickedList.replaceChildren(
      ...[...picked].map((index) => {
        const seat = view.seats.get(index);
        return h(
          "li",
          {},
          seat ? `${seat.section} · Row ${seat.row} · Seat ${seat.number}` : `Seat ${index}`,
          h("span", { class: "price" }, money(priceOf(seat?.tierId))),
          h("button", { type: "button", class: "link", "aria-label": "Remove this seat", onclick: () => seat && toggle(seat) }, "Remove"),
        );
      }),
    );
    if (picked.size === 0) pickedList.append(h("li", { class: "empty" }, "Click seats on the map to pick them."));
    const tiers = [...picked].map((i) => priceOf(view.seats.get(i)?.tierId));
    const currency = tiers.find(Boolean)?.currencyCode ?? "";
    const sum = tiers.reduce((acc, price) => acc + (price?.amountMinor ?? 0n), 0n);
    total.textContent = picked.size ? `${picked.size} seat${picked.size > 1 ? "s" : ""}: ${money({ currencyCode: currency, amountMinor: sum })}` : "";
    holdButton.disabled = picked.size === 0 || !onSale;
    holdButton.textContent = picked.size ? `Hold ${picked.size} seat${picked.size > 1 ? "s" : ""}` : "Hold seats";
    sessionStorage.setItem(storageKey, JSON.stringify([...picked]));
  }

  function toggle(seat: SeatInfo): void {
    if (picked.has(seat.index)) {
      picked.delete(seat.index);
      view.setPicked(seat.index, false);
    } else if (!seat.tierId) {
      status.error("That seat is not for sale.");
      return;
    } else if (view.state[seat.index] !== AVAILABLE) {
      status.error("That seat is taken.");
      return;
    } else if (picked.size >= MAX_PICK) {
      status.error(`At most ${MAX_PICK} seats per order.`);
      return;
    } else {
      picked.add(seat.index);
      view.setPicked(seat.index, true);
    }
    status.clear();
    refreshPicked();
  }

  function dropTaken(): void {
    let lost = 0;
    for (const index of picked) {
      if (view.state[index] !== AVAILABLE) {
        picked.delete(index);
        view.setPicked(index, false);
        lost++;
      }
    }
    if (lost) {
      status.error(`${lost} of the seats you picked ${lost === 1 ? "was" : "were"} just taken by someone else.`);
      refreshPicked();
    }
  }

  async function hold(request: MessageInitShape<typeof HoldSeatsRequestSchema>): Promise<void> {
    if (!session()) {
      navigate(`/login?next=${encodeURIComponent(`/events/${eventId}`)}`);
      return;
    }
    holdButton.disabled = true;
    status.info("Holding your seats…");
    try {
      const held = await inventory.holdSeats({ ...request, admissionToken: admission(eventId) }, { signal });
      status.info("Seats held. Preparing your order…");
      const booking = await checkout.createBooking({ hold: held.name, idempotencyKey: uuid() }, { signal });
      sessionStorage.removeItem(storageKey);
      navigate(`/checkout/${booking.name.replace(/^bookings\//, "")}`);
    } catch (error) {
      if (signal.aborted) return;
      const reason = reasonOf(error);
      if (reason && QUEUE_REASONS.has(reason)) {
        // The waiting room is on: line up, then come back with the picks kept.
        setAdmission(eventId, "", 0);
        navigate(`/events/${eventId}/queue`);
        return;
      }
      status.error(describe(error));
      holdButton.disabled = picked.size === 0 || !onSale;
    }
  }
  holdButton.addEventListener("click", () =>
    void hold({ eventId, selection: { case: "seats", value: { seatIndexes: [...picked] } } }),
  );

  // Best available: the keyboard's way in, and general admission's only way.
  const sectionChoice = h(
    "select",
    { id: "best-section", name: "section" },
    h("option", { value: "" }, "Any section"),
    ...map.sections
      .filter((section) => section.priceTierId)
      .map((section) =>
        h(
          "option",
          { value: section.id },
          `${section.name}${section.kind === SectionKind.GENERAL_ADMISSION ? " (standing)" : ""} — ${money(priceOf(section.priceTierId))}`,
        ),
      ),
  );
  const quantity = h("input", { id: "best-quantity", name: "quantity", type: "number", min: 1, max: MAX_PICK, value: 2, inputmode: "numeric" });
  const bestButton = h("button", { type: "submit" }, "Find best seats");
  const bestForm = h(
    "form",
    {
      class: "best",
      onsubmit: (e: globalThis.Event) => {
        e.preventDefault();
        const count = Number(quantity.value);
        if (!Number.isInteger(count) || count < 1 || count > MAX_PICK) {
          status.error(`Choose between 1 and ${MAX_PICK} tickets.`);
          return;
        }
        void hold({
          eventId,
          selection: { case: "bestAvailable", value: { quantity: count, sectionId: sectionChoice.value } },
        });
      },
    },
    h("h3", {}, "Or let us choose"),
    h("label", { for: "best-quantity" }, "Tickets"),
    quantity,
    h("label", { for: "best-section" }, "Where"),
    sectionChoice,
    bestButton,
  );

  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Prices" },
    ...map.priceTiers.map((tier) =>
      h("li", {}, h("span", { class: `swatch ${tierClass(tier.id)}`, "aria-hidden": "true" }), `${tier.name} ${money(tier.currentPrice ?? tier.price)}${tier.dynamicPricing ? " (price moves with demand)" : ""}`),
    ),
    h("li", {}, h("span", { class: "swatch held", "aria-hidden": "true" }), "Taken"),
    h("li", {}, h("span", { class: "swatch picked", "aria-hidden": "true" }), "Your pick"),
  );

  root.append(
    h(
      "article",
      { class: "event" },
      h(
        "header",
        {},
        h("p", {}, link("/", "← All events")),
        h("h1", {}, event.title),
        h("p", { class: "when" }, when(event.startTime, event.timeZone)),
        h("p", { class: "where" }, event.venue ? `${event.venue.name}, ${event.venue.city}` : ""),
        event.cancelReason ? h("p", { class: "status error" }, `Cancelled: ${event.cancelReason}`) : null,
        isAdmin() ? h("p", { class: "actions organiser-links" }, link(`/organiser/events/${eventId}/sales`, "Sales figures"), link(`/organiser/events/${eventId}`, "Edit event")) : null,
      ),
      h("p", { class: "description" }, event.description),
      event.performers.length
        ? h("section", { "aria-label": "Performers" }, h("h2", {}, "Performers"),
            h("ul", { class: "performers" }, ...event.performers.map((p) => h("li", {}, h("strong", {}, p.name), p.genre ? ` · ${p.genre}` : ""))))
        : null,
      h(
        "section",
        { class: "seating", "aria-label": "Seats" },
        h(
          "div",
          { class: "map-column" },
          h("h2", {}, "Pick your seats"),
          legend,
          view.element,
          h("p", { class: "availability" }, live, " ", availableCount),
          ...map.sections
            .filter((section) => section.kind === SectionKind.GENERAL_ADMISSION && section.priceTierId)
            .map((section) =>
              h("p", { class: "standing" }, `${section.name}: standing, ${section.capacity.toLocaleString()} places at ${money(priceOf(section.priceTierId))}. Choose it under “Or let us choose”.`),
            ),
        ),
        h(
          "aside",
          { class: "order", "aria-label": "Your order" },
          h("h2", {}, "Your order"),
          pickedList,
          total,
          holdButton,
          bestForm,
        ),
      ),
    ),
  );

  requestAnimationFrame(() => window.setTimeout(() => performance.measure("seatmap-draw", "seatmap-start"), 0));
  if (admission(eventId)) status.info("You're through the waiting room: hold your seats now.");

  try {
    const saved = JSON.parse(sessionStorage.getItem(storageKey) ?? "[]") as number[];
    for (const index of saved) if (view.seats.has(index) && picked.size < MAX_PICK) picked.add(index);
  } catch {
    /* nothing saved */
  }
  refreshPicked();

  const setOnSale = (value: boolean) => {
    onSale = value && event.status !== EventStatus.CANCELLED;
    bestButton.disabled = !onSale;
    refreshPicked();
  };

  const countAvailable = () => {
    let free = 0;
    for (const [index, seat] of view.seats) if (seat.tierId && view.state[index] === AVAILABLE) free++;
    availableCount.textContent = `${free.toLocaleString()} seats available`;
  };

  // Live availability: resume from the last cursor when the stream drops.
  let cursor = "";
  let first = true;
  while (!signal.aborted) {
    try {
      for await (const message of inventory.watchAvailability({ eventId, cursor }, { signal })) {
        const update = message.update;
        if (update.case === "snapshot") {
          view.setAll(update.value.sold, update.value.held);
          cursor = update.value.cursor;
          live.textContent = update.value.onSale ? "Live:" : "Not on sale right now.";
          setOnSale(update.value.onSale);
          live.dataset.state = "live";
          if (first) {
            first = false;
            for (const index of picked) {
              if (view.state[index] === AVAILABLE) view.setPicked(index, true);
            }
          }
        } else if (update.case === "change") {
          const change = update.value;
          cursor = change.cursor;
          const next =
            change.kind === ChangeKind.HELD ? HELD
            : change.kind === ChangeKind.SOLD ? SOLD
            : change.kind === ChangeKind.RELEASED || change.kind === ChangeKind.EXPIRED || change.kind === ChangeKind.UNSOLD ? AVAILABLE
            : undefined;
          if (next !== undefined) for (const index of change.seatIndexes) view.set(index, next);
          if (change.kind === ChangeKind.STATUS) {
            // Sales stopped or started: ask which.
            const now = await inventory.getAvailability({ eventId }, { signal }).catch(() => undefined);
            if (now) {
              live.textContent = now.onSale ? "Live:" : "Not on sale right now.";
              setOnSale(now.onSale);
            }
          }
        }
        dropTaken();
        countAvailable();
      }
    } catch (error) {
      if (signal.aborted) return;
      live.textContent = `Live updates interrupted (${describe(error)}). Reconnecting…`;
      live.dataset.state = "reconnecting";
    }
    await sleep(1000, signal);
  }
}
