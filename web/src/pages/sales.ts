// The organiser's sales views (StatsService; the edge lets only admins call
// it, so a buyer who opens these addresses reads the server's refusal):
//  - an event's sales, kept live by WatchEventStats while the page is open
//    (the stream closes with the page's signal): headline numbers, tickets
//    per hour as an SVG bar chart (its numbers also in a table), and the
//    sections and price tiers with a bar of sold, held and available;
//  - sales by date: the events starting in a date range (ListEventStats,
//    paged) with sold/capacity and revenue, and the totals over the range.
// No chart library: the few shapes are drawn with createElementNS.
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { describe, isUnauthenticated, money, reasonOf, session, stats, when } from "../api";
import { field, h, link, navigate, sleep, statusLine } from "../dom";
import type { EventStats, EventSummary, HourlySales, ListEventStatsResponse, Money, SeatCounts } from "../gen/boxoffice/stats/v1/stats_pb";

const SVG = "http://www.w3.org/2000/svg";
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Beyond this many hours from the first sale to the last, the chart counts per day. */
const MAX_HOURLY_BARS = 96;
const PAGE_SIZE = 25;
const STATUS_NAMES: Record<string, string> = { draft: "Draft", published: "Published", cancelled: "Cancelled" };

/** The sentence for a failed stats call; a refusal names who may see sales. */
export function salesError(error: unknown): string {
  const reason = reasonOf(error);
  if (reason === "ADMIN_REQUIRED" || reason === "PERMISSION_DENIED" || (error instanceof ConnectError && error.code === Code.PermissionDenied)) {
    return "Only organisers can see sales.";
  }
  if (reason === "NOT_FOUND" || (error instanceof ConnectError && error.code === Code.NotFound)) {
    return "There are no sales figures for this event yet.";
  }
  return describe(error);
}

function refused(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.PermissionDenied;
}

/** Sales pages need a logged-in user; whether an organiser is the server's call. */
function loggedIn(): boolean {
  if (session()) return true;
  navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
  return false;
}

/** Money, in `fallback` when the figure has no currency (nothing sold yet). */
function amount(value: Money | undefined, fallback = ""): string {
  return minor(value?.amountMinor ?? 0n, value?.currencyCode || fallback);
}

/** Minor units of `currency` (or a bare amount without one). */
function minor(amountMinor: bigint, currency: string): string {
  return currency ? money({ currencyCode: currency, amountMinor }) : (Number(amountMinor) / 100).toFixed(2);
}

const count = (n: number) => n.toLocaleString();
function percent(part: number, whole: number): string {
  if (!whole || !part) return "0%";
  const share = (part / whole) * 100;
  return share < 1 ? "under 1%" : `${Math.round(share)}%`;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, text?: string): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** A bar of sold, held and available seats (decorative: the numbers are in the row). */
function seatBar(seats: Pick<SeatCounts, "capacity" | "sold" | "held" | "available"> | undefined): HTMLElement {
  const capacity = seats?.capacity ?? 0;
  // A sliver stays visible for a few seats out of thousands.
  const part = (kind: string, n: number) => h("span", { class: kind, style: `width: ${capacity ? (n / capacity) * 100 : 0}%${n > 0 ? "; min-width: 2px" : ""}` });
  return h(
    "span",
    { class: "seat-bar", "aria-hidden": "true" },
    part("sold", seats?.sold ?? 0),
    part("held", seats?.held ?? 0),
    part("available", seats?.available ?? 0),
  );
}

function barLegend(): HTMLElement {
  return h(
    "ul",
    { class: "legend bar-legend", "aria-label": "Bar colours" },
    h("li", {}, h("span", { class: "swatch sold", "aria-hidden": "true" }), "Sold"),
    h("li", {}, h("span", { class: "swatch held-now", "aria-hidden": "true" }), "Held now"),
    h("li", {}, h("span", { class: "swatch available", "aria-hidden": "true" }), "Available"),
  );
}

// ---- tickets over time ----

interface Bucket {
  start: number;
  tickets: number;
  gross: bigint;
}

/** The sales per hour with the quiet hours put back (or per day when that is too many bars). */
function buckets(hours: HourlySales[]): { perDay: boolean; bars: Bucket[] } {
  const sales = hours
    .filter((s) => s.hour)
    .map((s) => ({ start: timestampDate(s.hour as Timestamp).getTime(), tickets: s.tickets, gross: s.gross?.amountMinor ?? 0n }))
    .sort((a, b) => a.start - b.start);
  if (!sales.length) return { perDay: false, bars: [] };
  const perDay = (sales[sales.length - 1].start - sales[0].start) / HOUR >= MAX_HOURLY_BARS;
  // Days are the organiser's own calendar days.
  const key = (time: number) => {
    if (!perDay) return time;
    const day = new Date(time);
    return new Date(day.getFullYear(), day.getMonth(), day.getDate()).getTime();
  };
  const step = (time: number) => {
    if (!perDay) return time + HOUR;
    const day = new Date(time);
    return new Date(day.getFullYear(), day.getMonth(), day.getDate() + 1).getTime();
  };
  const byKey = new Map<number, Bucket>();
  for (const sale of sales) {
    const k = key(sale.start);
    const bucket = byKey.get(k) ?? { start: k, tickets: 0, gross: 0n };
    bucket.tickets += sale.tickets;
    bucket.gross += sale.gross;
    byKey.set(k, bucket);
  }
  const bars: Bucket[] = [];
  const last = key(sales[sales.length - 1].start);
  for (let k = key(sales[0].start); k <= last; k = step(k)) bars.push(byKey.get(k) ?? { start: k, tickets: 0, gross: 0n });
  return { perDay, bars };
}

function bucketLabel(start: number, perDay: boolean): string {
  const date = new Date(start);
  if (perDay) return new Intl.DateTimeFormat(undefined, { dateStyle: "medium" }).format(date);
  const day = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" }).format(date);
  const hour = (t: number) => new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" }).format(new Date(t));
  return `${day}, ${hour(start)}–${hour(start + HOUR)}`;
}

/** A rounded-up axis maximum: 1, 2, 5, 10, 20, 50… */
function niceMax(value: number): number {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

let charts = 0;

/** Tickets per hour (or day) as bars, with a title and a summary for screen readers. */
function salesChart(hours: HourlySales[], currency: string): HTMLElement {
  const { perDay, bars } = buckets(hours);
  const unit = perDay ? "day" : "hour";
  if (!bars.length) return h("p", { class: "hint", id: "no-sales" }, "No tickets sold yet.");
  const total = bars.reduce((n, b) => n + b.tickets, 0);
  const busiest = bars.reduce((a, b) => (b.tickets > a.tickets ? b : a));
  const id = `sales-chart-${++charts}`;
  // Narrower on a phone, so the labels stay readable when it is scaled down.
  const W = window.matchMedia("(max-width: 40rem)").matches ? 360 : 640;
  const H = 220;
  const left = 40;
  const right = 8;
  const top = 12;
  const bottom = 30;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const max = niceMax(busiest.tickets);
  const y = (n: number) => top + plotH - (n / max) * plotH;
  const slot = plotW / bars.length;
  const barW = Math.max(1, Math.min(slot * 0.8, 48));

  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${id}-title ${id}-desc` });
  chart.append(
    svg("title", { id: `${id}-title` }, `Tickets sold per ${unit}`),
    svg(
      "desc",
      { id: `${id}-desc` },
      `${count(total)} tickets from ${bucketLabel(bars[0].start, perDay)} to ${bucketLabel(bars[bars.length - 1].start, perDay)}; ` +
        `the busiest ${unit} was ${bucketLabel(busiest.start, perDay)} with ${count(busiest.tickets)} tickets (${minor(busiest.gross, currency)}).`,
    ),
  );
  const axis = svg("g", { class: "axis", "aria-hidden": "true" });
  for (const tick of [0, max / 2, max]) {
    if (!Number.isInteger(tick)) continue;
    axis.append(
      svg("line", { x1: left, x2: W - right, y1: y(tick), y2: y(tick), class: tick ? "grid" : "base" }),
      svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end" }, count(tick)),
    );
  }
  const labelled = bars.length === 1 ? [0] : [0, bars.length - 1];
  for (const i of labelled) {
    const anchor = bars.length === 1 ? "middle" : i === 0 ? "start" : "end";
    const x = bars.length === 1 ? left + slot / 2 : i === 0 ? left : W - right;
    axis.append(svg("text", { x, y: H - 10, "text-anchor": anchor }, bucketLabel(bars[i].start, perDay)));
  }
  chart.append(axis);
  const shapes = svg("g", { class: "bars" });
  bars.forEach((bar, i) => {
    if (!bar.tickets) return;
    const rect = svg("rect", { x: left + i * slot + (slot - barW) / 2, y: y(bar.tickets), width: barW, height: Math.max(1, y(0) - y(bar.tickets)), rx: 2 });
    rect.append(svg("title", {}, `${bucketLabel(bar.start, perDay)}: ${count(bar.tickets)} tickets, ${minor(bar.gross, currency)}`));
    shapes.append(rect);
  });
  chart.append(shapes);

  const table = h(
    "table",
    { class: "summary", id: `${id}-table` },
    h("caption", {}, `Tickets per ${unit}${perDay ? "" : " (hours with sales)"}`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, perDay ? "Day" : "Hour"), h("th", { scope: "col", class: "num" }, "Tickets"), h("th", { scope: "col", class: "num" }, "Gross"))),
    h(
      "tbody",
      {},
      ...bars
        .filter((bar) => bar.tickets)
        .map((bar) =>
          h("tr", {}, h("td", {}, bucketLabel(bar.start, perDay)), h("td", { class: "num" }, count(bar.tickets)), h("td", { class: "num" }, minor(bar.gross, currency))),
        ),
    ),
  );
  return h("div", { class: "chart-block" }, h("div", { class: "chart-frame" }, chart), h("details", {}, h("summary", {}, `Table of tickets per ${unit}`), table));
}

// ---- one event ----

function figure(label: string, id: string, value: string, raw: number | bigint, note?: string): HTMLElement {
  return h("div", { class: "figure" }, h("dt", {}, label), h("dd", { id, "data-value": String(raw) }, value, note ? h("small", {}, note) : null));
}

function seatsTable(caption: string, rows: { name: string; seats?: SeatCounts; extra?: string[] }[], extraHeads: string[] = []): HTMLElement {
  const num = (text: string) => h("th", { scope: "col", class: "num" }, text);
  // Focusable, so the keyboard can scroll a table wider than a phone.
  return h(
    "div",
    { class: "table-scroll", tabindex: 0, role: "region", "aria-label": `Seats ${caption.toLowerCase()}` },
    h(
      "table",
      { class: "summary seats-table" },
      h("caption", {}, caption),
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, caption.replace(/^By /, "").replace(/^./, (c) => c.toUpperCase())), ...extraHeads.map(num), num("Capacity"), num("Sold"), num("Held now"), num("Available"), h("th", { scope: "col" }, "Share")),
      ),
      h(
        "tbody",
        {},
        ...rows.map((row) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, row.name),
            ...(row.extra ?? []).map((text) => h("td", { class: "num" }, text)),
            h("td", { class: "num" }, count(row.seats?.capacity ?? 0)),
            h("td", { class: "num" }, count(row.seats?.sold ?? 0)),
            h("td", { class: "num" }, count(row.seats?.held ?? 0)),
            h("td", { class: "num" }, count(row.seats?.available ?? 0)),
            h("td", { class: "bar-cell" }, seatBar(row.seats)),
          ),
        ),
      ),
    ),
  );
}

function renderStats(target: HTMLElement, figures: EventStats): void {
  const currency = figures.revenue?.gross?.currencyCode || figures.tiers.find((t) => t.price?.currencyCode)?.price?.currencyCode || "";
  const seats = figures.seats;
  const revenue = figures.revenue;
  const sold = seats?.sold ?? 0;
  const capacity = seats?.capacity ?? 0;
  // A live update keeps what the user had: the hourly table open, the
  // tables scrolled, the keyboard focus.
  const open = target.querySelector("details")?.open ?? false;
  const scrollers = () => [...target.querySelectorAll<HTMLElement>(".table-scroll, summary")];
  const scrolled = scrollers().map((e) => e.scrollLeft);
  const focused = scrollers().findIndex((e) => e === document.activeElement);
  target.replaceChildren(
    h(
      "section",
      { "aria-labelledby": "figures-heading" },
      h("h2", { id: "figures-heading" }, "At a glance"),
      h(
        "dl",
        { class: "figures" },
        figure("Sold", "stat-sold", `${count(sold)} / ${count(capacity)}`, sold, `${percent(sold, capacity)} of capacity`),
        figure("Held now", "stat-held", count(seats?.held ?? 0), seats?.held ?? 0),
        figure("Available", "stat-available", count(seats?.available ?? 0), seats?.available ?? 0),
        figure("Gross", "stat-gross", amount(revenue?.gross, currency), revenue?.gross?.amountMinor ?? 0n),
        figure("Fees", "stat-fees", amount(revenue?.fees, currency), revenue?.fees?.amountMinor ?? 0n),
        figure("Refunds", "stat-refunds", amount(revenue?.refunds, currency), revenue?.refunds?.amountMinor ?? 0n),
        figure("Net", "stat-net", amount(revenue?.net, currency), revenue?.net?.amountMinor ?? 0n),
        figure("Bookings confirmed", "stat-confirmed", count(figures.bookingsConfirmed), figures.bookingsConfirmed),
        figure("Bookings cancelled", "stat-cancelled", count(figures.bookingsCancelled), figures.bookingsCancelled),
      ),
    ),
    h("section", { "aria-labelledby": "chart-heading" }, h("h2", { id: "chart-heading" }, "Tickets over time"), salesChart(figures.salesByHour, currency)),
    h(
      "section",
      { "aria-labelledby": "seats-heading" },
      h("h2", { id: "seats-heading" }, "Seats"),
      barLegend(),
      seatsTable(
        "By section",
        figures.sections.map((s) => ({ name: s.name, seats: s.seats })),
      ),
      seatsTable(
        "By price tier",
        figures.tiers.map((t) => ({ name: t.name, seats: t.seats, extra: [amount(t.price, currency), amount(t.faceValueSold, currency)] })),
        ["Price", "Face value sold"],
      ),
    ),
  );
  const details = target.querySelector("details");
  if (details) details.open = open;
  scrollers().forEach((e, i) => {
    e.scrollLeft = scrolled[i] ?? 0;
    if (i === focused) e.focus({ preventScroll: true });
  });
}

export async function salesPage(root: HTMLElement, signal: AbortSignal, eventId: string): Promise<void> {
  document.title = "Sales · boxoffice";
  if (!loggedIn()) return;
  const status = statusLine();
  const heading = h("h1", {}, "Sales");
  const subtitle = h("p", { class: "when" });
  const live = h("p", { class: "live", id: "sales-live" }, "Connecting to live sales…");
  const body = h("div", { class: "sales", id: "sales" });
  const actions = h(
    "p",
    { class: "actions" },
    link("/organiser", "← Organiser"),
    link("/organiser/sales", "Sales by date"),
    link(`/events/${eventId}`, "Buyer's page"),
    link(`/organiser/events/${eventId}`, "Edit event"),
  );
  root.append(
    actions,
    heading,
    subtitle,
    live,
    status.element,
    body,
  );

  // Live while the page is open: a dropped stream is opened again; the
  // signal (the user leaving the page) closes it.
  let received = false;
  let wait = 1000;
  while (!signal.aborted) {
    try {
      for await (const figures of stats.watchEventStats({ eventId }, { signal })) {
        received = true;
        wait = 1000;
        status.clear();
        heading.textContent = `Sales: ${figures.title}`;
        document.title = `Sales: ${figures.title} · boxoffice`;
        subtitle.textContent = [when(figures.startTime), STATUS_NAMES[figures.status] ?? figures.status].filter(Boolean).join(" · ");
        renderStats(body, figures);
        const updated = figures.updatedAt ? new Intl.DateTimeFormat(undefined, { timeStyle: "medium" }).format(timestampDate(figures.updatedAt)) : "";
        live.textContent = `Live: updates as tickets sell${updated ? ` (figures as of ${updated})` : ""}.`;
        live.dataset.state = "live";
      }
    } catch (error) {
      if (signal.aborted) return;
      if (isUnauthenticated(error)) return navigate(`/login?next=${encodeURIComponent(location.pathname)}`, { replace: true });
      if (refused(error)) {
        actions.replaceChildren(link(`/events/${eventId}`, "← The event"));
        live.remove();
        body.replaceChildren();
        status.error(salesError(error));
        return;
      }
      if (received) {
        live.textContent = `Live updates interrupted (${salesError(error)}). Reconnecting…`;
        live.dataset.state = "reconnecting";
      } else {
        live.textContent = "";
        status.error(salesError(error));
      }
      // An event the figures do not have yet (just created) may come: ask again, less often.
      wait = Math.min(wait * 2, 10_000);
    }
    await sleep(wait, signal);
  }
}

// ---- sales by date ----

/** A local calendar date as an <input type=date> value. */
function dateValue(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** Midnight (local) at the start of "2027-03-01", `plusDays` later. */
function localMidnight(value: string, plusDays = 0): Date | undefined {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!match) return undefined;
  return new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + plusDays);
}

function summaryRow(event: EventSummary): HTMLElement {
  const currency = event.revenue?.gross?.currencyCode ?? "";
  const sold = { capacity: event.capacity, sold: event.sold, held: 0, available: Math.max(0, event.capacity - event.sold) };
  return h(
    "tr",
    { "data-event": event.eventId },
    h("th", { scope: "row" }, link(`/organiser/events/${event.eventId}/sales`, event.title)),
    h("td", { class: "starts" }, when(event.startTime)),
    h("td", {}, STATUS_NAMES[event.status] ?? event.status),
    h("td", { class: "num sold-count" }, `${count(event.sold)} / ${count(event.capacity)}`),
    h("td", { class: "bar-cell" }, seatBar(sold)),
    h("td", { class: "num" }, currency ? amount(event.revenue?.gross) : "—"),
    h("td", { class: "num" }, currency ? amount(event.revenue?.refunds) : "—"),
    h("td", { class: "num net" }, currency ? amount(event.revenue?.net) : "—"),
  );
}

export async function salesByDatePage(root: HTMLElement, signal: AbortSignal, params: URLSearchParams): Promise<void> {
  document.title = "Sales by date · boxoffice";
  if (!loggedIn()) return;
  const status = statusLine();
  const today = new Date();
  const from = h("input", { type: "date", id: "sales-from", name: "from", required: true, value: params.get("from") || dateValue(today) });
  const to = h("input", {
    type: "date",
    id: "sales-to",
    name: "to",
    required: true,
    value: params.get("to") || dateValue(new Date(today.getFullYear(), today.getMonth(), today.getDate() + 90)),
  });
  const rows = h("tbody");
  const totals = h("tfoot");
  const caption = h("caption", {}, "Events");
  const pageNote = h("p", { class: "hint", id: "sales-page", "aria-live": "polite" });
  const currencyNote = h("p", { class: "hint", id: "currency-note", hidden: true });
  const previous = h("button", { type: "button", id: "previous-page", disabled: true }, "Previous page");
  const next = h("button", { type: "button", id: "next-page", disabled: true }, "Next page");
  const table = h(
    "table",
    { class: "summary sales-table", "aria-busy": "true" },
    caption,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Event"),
        h("th", { scope: "col" }, "Starts"),
        h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "num" }, "Sold / capacity"),
        h("th", { scope: "col" }, "Share sold"),
        h("th", { scope: "col", class: "num" }, "Gross"),
        h("th", { scope: "col", class: "num" }, "Refunds"),
        h("th", { scope: "col", class: "num" }, "Net"),
      ),
    ),
    rows,
    totals,
  );
  const form = h(
    "form",
    {
      class: "filters sales-range",
      onsubmit: (e: globalThis.Event) => {
        e.preventDefault();
        const query = new URLSearchParams({ from: from.value, to: to.value });
        navigate(`/organiser/sales?${query}`);
      },
    },
    field("From", from),
    field("To", to),
    h("button", { type: "submit", class: "primary" }, "Show"),
  );
  root.append(
    h("p", { class: "actions" }, link("/organiser", "← Organiser")),
    h("h1", {}, "Sales by date"),
    form,
    h("p", { class: "hint" }, "Events starting on these days, both included; the money is what buyers paid, less refunds."),
    status.element,
    h("div", { class: "table-scroll" }, table),
    currencyNote,
    h("div", { class: "pager" }, previous, pageNote, next),
  );

  const start = localMidnight(from.value);
  const end = localMidnight(to.value, 1);
  if (!start || !end) {
    status.error("Please choose both dates.");
    return;
  }
  if (end <= start) {
    status.error("The end date must be on or after the start date.");
    return;
  }
  caption.textContent = `Events starting ${new Intl.DateTimeFormat(undefined, { dateStyle: "medium" }).formatRange(start, new Date(end.getTime() - DAY))}`;

  // Page tokens of the pages seen, to go back; the first page has none.
  const tokens = [""];
  let page = 0;
  const load = async () => {
    table.setAttribute("aria-busy", "true");
    previous.disabled = true;
    next.disabled = true;
    let answer: ListEventStatsResponse;
    try {
      answer = await stats.listEventStats(
        { startFrom: timestampFromDate(start), startTo: timestampFromDate(end), pageSize: PAGE_SIZE, pageToken: tokens[page] },
        { signal },
      );
    } catch (error) {
      if (signal.aborted) return;
      if (isUnauthenticated(error)) return navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
      status.error(salesError(error));
      table.removeAttribute("aria-busy");
      if (refused(error)) {
        root.querySelector(".actions")?.replaceChildren(link("/", "← All events"));
        root.querySelector(".hint")?.remove();
        table.parentElement?.remove();
        pageNote.parentElement?.remove();
        form.remove();
      } else {
        previous.disabled = page === 0;
      }
      return;
    }
    status.clear();
    rows.replaceChildren(...answer.events.map(summaryRow));
    if (!answer.events.length) rows.append(h("tr", {}, h("td", { colspan: 8 }, "No events start in these days.")));
    // The totals are over every page; amounts only add up within one currency.
    const currencies = new Set(answer.events.map((e) => e.revenue?.gross?.currencyCode).filter(Boolean));
    const mixed = currencies.size > 1;
    currencyNote.hidden = !mixed;
    currencyNote.textContent = mixed ? `These events sell in ${[...currencies].join(", ")}: see each event for its money; a total across currencies would mean nothing.` : "";
    const totalMoney = (value: Money | undefined) => (mixed ? "Several currencies" : value?.currencyCode ? amount(value) : "—");
    totals.replaceChildren(
      h(
        "tr",
        { class: "grand", id: "sales-totals" },
        h("th", { scope: "row", colspan: 3 }, "All events in these days"),
        h("td", { class: "num sold-count" }, `${count(answer.sold)} / ${count(answer.capacity)}`),
        h("td", { class: "bar-cell" }, seatBar({ capacity: answer.capacity, sold: answer.sold, held: 0, available: Math.max(0, answer.capacity - answer.sold) })),
        h("td", { class: "num" }, totalMoney(answer.revenue?.gross)),
        h("td", { class: "num" }, totalMoney(answer.revenue?.refunds)),
        h("td", { class: "num net" }, totalMoney(answer.revenue?.net)),
      ),
    );
    if (answer.nextPageToken) tokens[page + 1] = answer.nextPageToken;
    else tokens.length = page + 1;
    previous.disabled = page === 0;
    next.disabled = !answer.nextPageToken;
    pageNote.textContent = answer.events.length ? `Page ${page + 1}: events ${page * PAGE_SIZE + 1}–${page * PAGE_SIZE + answer.events.length}` : "";
    table.removeAttribute("aria-busy");
  };
  previous.addEventListener("click", () => {
    if (page > 0) page--;
    void load();
  });
  next.addEventListener("click", () => {
    if (tokens[page + 1]) page++;
    void load();
  });
  await load();
}
