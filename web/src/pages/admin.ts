// The organiser's pages (admin role; the catalog checks it on every call):
// the events list (drafts and published), a venue created from a seat-map
// file (CreateVenue), an event created and edited with its price tiers
// (CreateEvent, UpdateEvent), published (PublishEvent) or called off
// (CancelEvent), and its waiting room turned on with a rate
// (ConfigureWaitingRoom).
//
// The API has no ListVenues or ListPerformers: the venues offered are those
// of listed events plus the ones created in this browser, and performers are
// matched by name among listed events' performers, else created.
import { fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { catalog, describe, isAdmin, isUnauthenticated, session, waitingRoom, when } from "../api";
import { field, h, link, navigate, statusLine } from "../dom";
import {
  Category,
  CreateVenueRequestSchema,
  EventStatus,
  SectionKind,
  type Event,
  type PriceTierSchema,
  type Venue,
} from "../gen/boxoffice/catalog/v1/catalog_pb";
import { CATEGORY_NAMES } from "./home";

const STATUS_NAMES: Record<number, string> = {
  [EventStatus.DRAFT]: "Draft",
  [EventStatus.PUBLISHED]: "Published",
  [EventStatus.CANCELLED]: "Cancelled",
};
const VENUES_KEY = "boxoffice.organiser.venues";

/** Organiser pages need a logged-in admin; others are told why. */
function guard(root: HTMLElement): boolean {
  if (!session()) {
    navigate(`/login?next=${encodeURIComponent(location.pathname)}`, { replace: true });
    return false;
  }
  if (!isAdmin()) {
    root.append(h("h1", {}, "Organisers only"), h("p", {}, "Log in with an organiser account to manage venues and events."));
    return false;
  }
  return true;
}

// ---- time zones: organisers type times as the venue's wall-clock time ----

/** Milliseconds the zone is ahead of UTC at `instant`. */
function zoneOffset(instant: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(instant));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second")) - Math.floor(instant / 1000) * 1000;
}

/** "2027-03-01T19:30" in `timeZone` → a Timestamp. */
function fromWallClock(value: string, timeZone: string): Timestamp | undefined {
  if (!value) return undefined;
  const [date, time = "00:00"] = value.split("T");
  const [y, m, d] = date.split("-").map(Number);
  const [hh, mm, ss = 0] = time.split(":").map(Number);
  const naive = Date.UTC(y, m - 1, d, hh, mm, ss);
  let instant = naive - zoneOffset(naive, timeZone);
  instant = naive - zoneOffset(instant, timeZone);
  return timestampFromDate(new Date(instant));
}

/** A Timestamp → "2027-03-01T19:30:00" in `timeZone`, for a datetime-local input. */
function toWallClock(time: Timestamp | undefined, timeZone: string): string {
  if (!time) return "";
  const instant = timestampDate(time).getTime();
  return new Date(instant + zoneOffset(instant, timeZone)).toISOString().slice(0, 19);
}

function localZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

// ---- what the organiser can pick from ----

interface KnownVenue {
  id: string;
  name: string;
  city: string;
}

function savedVenues(): KnownVenue[] {
  try {
    return JSON.parse(localStorage.getItem(VENUES_KEY) ?? "[]") as KnownVenue[];
  } catch {
    return [];
  }
}

async function listAll(status: EventStatus, signal: AbortSignal, pages = 3): Promise<Event[]> {
  const events: Event[] = [];
  let pageToken = "";
  for (let page = 0; page < pages; page++) {
    const answer = await catalog.listEvents({ status, pageSize: 200, pageToken }, { signal });
    events.push(...answer.events);
    pageToken = answer.nextPageToken;
    if (!pageToken) break;
  }
  return events;
}

async function knownVenuesAndPerformers(signal: AbortSignal): Promise<{ venues: KnownVenue[]; performers: Map<string, string> }> {
  const [published, drafts] = await Promise.all([listAll(EventStatus.PUBLISHED, signal), listAll(EventStatus.DRAFT, signal, 1)]);
  const venues = new Map<string, KnownVenue>();
  for (const venue of savedVenues()) venues.set(venue.id, venue);
  const performers = new Map<string, string>();
  for (const event of [...published, ...drafts]) {
    if (event.venue) venues.set(event.venue.id, { id: event.venue.id, name: event.venue.name, city: event.venue.city });
    for (const performer of event.performers) performers.set(performer.name.toLowerCase(), performer.id);
  }
  return { venues: [...venues.values()].sort((a, b) => a.name.localeCompare(b.name)), performers };
}

// ---- the events list ----

export async function adminPage(root: HTMLElement, signal: AbortSignal): Promise<void> {
  document.title = "Organiser · boxoffice";
  if (!guard(root)) return;
  const status = statusLine();
  const drafts = h("tbody");
  const published = h("tbody");
  const filter = h("input", { type: "search", id: "event-filter", placeholder: "Title, venue or city" });
  const table = (caption: string, body: HTMLElement) =>
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "events-table" },
        h("caption", {}, caption),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Event"), h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Venue"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Sales"))),
        body,
      ),
    );
  root.append(
    h("h1", {}, "Organiser"),
    h("p", { class: "actions" }, link("/organiser/events/new", "New event"), link("/organiser/venues/new", "New venue"), link("/organiser/sales", "Sales by date")),
    status.element,
    field("Filter events", filter),
    table("Drafts", drafts),
    table("Published and upcoming", published),
  );
  const row = (event: Event) =>
    h(
      "tr",
      { "data-search": `${event.title} ${event.venue?.name ?? ""} ${event.venue?.city ?? ""}`.toLowerCase() },
      h("td", {}, link(`/organiser/events/${event.id}`, event.title)),
      h("td", {}, when(event.startTime, event.timeZone)),
      h("td", {}, event.venue ? `${event.venue.name}, ${event.venue.city}` : ""),
      h("td", {}, STATUS_NAMES[event.status] ?? ""),
      h("td", {}, h("a", { href: `/organiser/events/${event.id}/sales`, "data-link": true, "aria-label": `Sales of ${event.title}` }, "Sales")),
    );
  try {
    const [draftEvents, publishedEvents] = await Promise.all([
      listAll(EventStatus.DRAFT, signal, 1),
      catalog.listEvents({ status: EventStatus.PUBLISHED, pageSize: 100 }, { signal }).then((a) => a.events),
    ]);
    drafts.replaceChildren(...draftEvents.map(row));
    published.replaceChildren(...publishedEvents.map(row));
    if (!draftEvents.length) drafts.append(h("tr", {}, h("td", { colspan: 5 }, "No drafts.")));
  } catch (error) {
    if (signal.aborted) return;
    if (isUnauthenticated(error)) return navigate(`/login?next=${encodeURIComponent("/organiser")}`, { replace: true });
    status.error(describe(error));
  }
  filter.addEventListener("input", () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const tr of root.querySelectorAll<HTMLTableRowElement>("tr[data-search]")) {
      tr.hidden = !words.every((word) => tr.dataset.search?.includes(word));
    }
  });
}

// ---- a venue from a seat-map file ----

const EXAMPLE_SEAT_MAP = {
  sections: [
    { name: "Stalls", kind: "SEATED", rows: Array.from("ABCDEFGH", (label) => ({ label, seatCount: 20 })) },
    {
      name: "Circle",
      kind: "SEATED",
      rows: [
        {
          label: "A",
          seats: Array.from({ length: 16 }, (_, i) => ({ number: String(i + 1), x: i * 1.2 - 9, y: 14 + Math.abs(i - 7.5) * 0.15 })),
        },
      ],
    },
    { name: "Standing", kind: "GENERAL_ADMISSION", capacity: 200 },
  ],
};

/** A seat-map file: `sections` as CreateVenueRequest's JSON, kinds with or without their prefix. */
function parseSeatMap(text: string): MessageInitShape<typeof CreateVenueRequestSchema> {
  let json: { sections?: { kind?: string | number }[] } & Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("The seat-map file is not valid JSON.");
  }
  if (!json || !Array.isArray(json.sections) || json.sections.length === 0) throw new Error("The seat-map file needs a non-empty “sections” list.");
  for (const section of json.sections) {
    if (typeof section.kind === "string" && !section.kind.startsWith("SECTION_KIND_")) section.kind = `SECTION_KIND_${section.kind.toUpperCase()}`;
  }
  try {
    return fromJson(CreateVenueRequestSchema, json as JsonValue);
  } catch (error) {
    throw new Error(`The seat-map file does not fit the format: ${(error as Error).message}`);
  }
}

export function venueEditorPage(root: HTMLElement, signal: AbortSignal): void {
  document.title = "New venue · boxoffice";
  if (!guard(root)) return;
  const status = statusLine();
  const input = (id: string, attrs: Record<string, string | number | boolean> = {}) => h("input", { id, name: id, ...attrs });
  const name = input("venue-name", { required: true });
  const street = input("street", { autocomplete: "off" });
  const city = input("venue-city", { required: true });
  const region = input("region");
  const postal = input("postal-code");
  const country = input("country", { required: true, maxlength: 2, pattern: "[A-Za-z]{2}", value: "GB" });
  const zone = input("time-zone", { required: true, value: localZone() });
  const latitude = input("latitude", { type: "number", step: "any", min: -90, max: 90 });
  const longitude = input("longitude", { type: "number", step: "any", min: -180, max: 180 });
  const file = input("seat-map", { type: "file", accept: "application/json,.json", required: true });
  const preview = h("div", { class: "preview", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, "Create venue");
  let sections: MessageInitShape<typeof CreateVenueRequestSchema>["sections"] = [];

  const example = URL.createObjectURL(new Blob([JSON.stringify(EXAMPLE_SEAT_MAP, null, 2)], { type: "application/json" }));
  signal.addEventListener("abort", () => URL.revokeObjectURL(example));

  file.addEventListener("change", async () => {
    preview.replaceChildren();
    sections = [];
    const chosen = file.files?.[0];
    if (!chosen) return;
    try {
      const parsed = parseSeatMap(await chosen.text());
      sections = parsed.sections ?? [];
      if (parsed.name && !name.value) name.value = parsed.name;
      if (parsed.timeZone) zone.value = parsed.timeZone;
      const places = sections.map((s) =>
        s.kind === SectionKind.GENERAL_ADMISSION ? (s.capacity ?? 0) : (s.rows ?? []).reduce((n, r) => n + ((r.seats?.length ?? 0) || (r.seatCount ?? 0)), 0),
      );
      preview.append(
        h(
          "table",
          { class: "summary" },
          h("caption", {}, `${sections.length} sections, ${places.reduce((a, b) => a + b, 0).toLocaleString()} places`),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Section"), h("th", { scope: "col" }, "Kind"), h("th", { scope: "col", class: "num" }, "Places"))),
          h(
            "tbody",
            {},
            ...sections.map((s, i) =>
              h("tr", {}, h("td", {}, s.name ?? ""), h("td", {}, s.kind === SectionKind.GENERAL_ADMISSION ? "Standing" : "Seated"), h("td", { class: "num" }, places[i].toLocaleString())),
            ),
          ),
        ),
      );
      status.clear();
    } catch (error) {
      status.error(describe(error));
    }
  });

  root.append(
    h(
      "form",
      {
        class: "editor",
        onsubmit: async (e: globalThis.Event) => {
          e.preventDefault();
          if (!sections?.length) {
            status.error("Choose a seat-map file first.");
            return;
          }
          submit.disabled = true;
          status.info("Creating the venue…");
          try {
            const venue: Venue = await catalog.createVenue(
              {
                name: name.value.trim(),
                address: { street: street.value, city: city.value.trim(), region: region.value, postalCode: postal.value, countryCode: country.value.toUpperCase() },
                location: latitude.value && longitude.value ? { latitude: Number(latitude.value), longitude: Number(longitude.value) } : undefined,
                timeZone: zone.value.trim(),
                sections,
              },
              { signal },
            );
            localStorage.setItem(VENUES_KEY, JSON.stringify([...savedVenues().filter((v) => v.id !== venue.id), { id: venue.id, name: venue.name, city: venue.address?.city ?? "" }]));
            navigate(`/organiser/events/new?venue=${venue.id}&created=venue`);
          } catch (error) {
            if (!signal.aborted) status.error(describe(error));
            submit.disabled = false;
          }
        },
      },
      h("p", {}, link("/organiser", "← Organiser")),
      h("h1", {}, "New venue"),
      h(
        "fieldset",
        {},
        h("legend", {}, "Seat map"),
        field("Seat-map file (JSON)", file, "Sections with rows of seats (a seat count, or seats with x/y drawing coordinates), or standing areas with a capacity."),
        h("p", { class: "hint" }, h("a", { href: example, download: "seat-map-example.json" }, "Download an example seat-map file")),
        preview,
      ),
      h(
        "fieldset",
        {},
        h("legend", {}, "Where"),
        field("Name", name),
        field("Street", street),
        field("City", city),
        field("Region", region),
        field("Postal code", postal),
        field("Country code", country, "Two letters, e.g. GB, US, FR."),
        field("Time zone", zone, "IANA name, e.g. Europe/London."),
        field("Latitude", latitude, "For “near me” searches."),
        field("Longitude", longitude),
      ),
      status.element,
      submit,
    ),
  );
}

// ---- an event: create, edit, publish, cancel, waiting room ----

interface TierRow {
  element: HTMLElement;
  id: string;
  name: HTMLInputElement;
  price: HTMLInputElement;
  sections: HTMLInputElement[];
}

export async function eventEditorPage(root: HTMLElement, signal: AbortSignal, eventId: string | undefined): Promise<void> {
  document.title = `${eventId ? "Edit event" : "New event"} · boxoffice`;
  if (!guard(root)) return;
  const params = new URLSearchParams(location.search);
  const status = statusLine();
  root.append(h("p", {}, link("/organiser", "← Organiser")), status.element);
  let event: Event | undefined;
  let known: Awaited<ReturnType<typeof knownVenuesAndPerformers>>;
  try {
    [event, known] = await Promise.all([eventId ? catalog.getEvent({ id: eventId }, { signal }) : Promise.resolve(undefined), knownVenuesAndPerformers(signal)]);
  } catch (error) {
    if (!signal.aborted) status.error(describe(error));
    return;
  }
  const draft = !event || event.status === EventStatus.DRAFT;
  document.title = `${event ? event.title : "New event"} · boxoffice`;

  const title = h("input", { id: "title", name: "title", required: true, maxlength: 200, value: event?.title ?? "" });
  const description = h("textarea", { id: "description", name: "description", rows: 3 });
  description.value = event?.description ?? "";
  const category = h("select", { id: "event-category", name: "category" }, ...Object.entries(CATEGORY_NAMES).map(([value, name]) => h("option", { value }, name)));
  category.value = String(event?.category || Category.CONCERT);
  const venue = h(
    "select",
    { id: "venue", name: "venue", required: true, disabled: Boolean(event) },
    h("option", { value: "" }, "Choose a venue"),
    ...known.venues.map((v) => h("option", { value: v.id }, `${v.name}, ${v.city}`)),
  );
  venue.value = event?.venueId || event?.venue?.id || params.get("venue") || "";
  const performers = h("input", { id: "performers", name: "performers", value: event?.performers.map((p) => p.name).join(", ") ?? "", autocomplete: "off" });
  const start = h("input", { id: "start", name: "start", type: "datetime-local", step: 60, required: true });
  const end = h("input", { id: "end", name: "end", type: "datetime-local", step: 60, required: true });
  const onSale = h("input", { id: "on-sale", name: "on-sale", type: "datetime-local", step: 60 });
  const currency = h("input", { id: "currency", name: "currency", required: true, maxlength: 3, pattern: "[A-Za-z]{3}", value: event?.priceTiers[0]?.price?.currencyCode ?? "GBP" });
  const zoneNote = h("p", { class: "hint", id: "zone-note" });
  const tiersBody = h("div", { class: "tiers" });
  const addTier = h("button", { type: "button", id: "add-tier", disabled: !draft }, "Add a price tier");
  const save = h("button", { type: "submit", class: "primary", id: "save-event" }, event ? "Save changes" : "Create draft");
  const tiers: TierRow[] = [];
  let venueSections: { id: string; name: string; kind: SectionKind; capacity: number }[] = [];
  let timeZone = event?.timeZone || localZone();

  let drawn = 0;
  const renderTier = (tier?: MessageInitShape<typeof PriceTierSchema>) => {
    // Ids stay unique when tiers are removed and added; labels count from 1.
    const index = drawn++;
    const name = h("input", { id: `tier-name-${index}`, required: true, value: tier?.name ?? "", disabled: !draft });
    const price = h("input", {
      id: `tier-price-${index}`,
      type: "number",
      min: 0,
      step: "0.01",
      required: true,
      inputmode: "decimal",
      value: tier?.price ? (Number(tier.price.amountMinor ?? 0n) / 100).toFixed(2) : "",
      disabled: !draft,
    });
    const chosen = new Set(tier?.sectionIds ?? []);
    const boxes = venueSections.map((section) => {
      const box = h("input", { type: "checkbox", id: `tier-${index}-section-${section.id}`, value: section.id, disabled: !draft });
      box.checked = chosen.has(section.id);
      return box;
    });
    const row: TierRow = {
      id: tier?.id ?? "",
      name,
      price,
      sections: boxes,
      element: h(
        "fieldset",
        { class: "tier" },
        h("legend", {}, `Price tier ${index + 1}`),
        field("Name", name),
        field("Price", price),
        h(
          "div",
          { class: "sections", role: "group", "aria-label": `Sections of price tier ${index + 1}` },
          ...venueSections.map((section, i) =>
            h("label", { class: "check" }, boxes[i], ` ${section.name}${section.kind === SectionKind.GENERAL_ADMISSION ? " (standing)" : ""} · ${section.capacity.toLocaleString()}`),
          ),
        ),
        draft
          ? h(
              "button",
              {
                type: "button",
                class: "link",
                onclick: () => {
                  tiers.splice(tiers.indexOf(row), 1);
                  row.element.remove();
                },
              },
              `Remove price tier ${index + 1}`,
            )
          : null,
      ),
    };
    tiers.push(row);
    tiersBody.append(row.element);
  };

  const loadVenue = async () => {
    venueSections = [];
    tiers.length = 0;
    drawn = 0;
    tiersBody.replaceChildren();
    if (!venue.value) return;
    try {
      const chosen = await catalog.getVenue({ id: venue.value }, { signal });
      venueSections = chosen.sections.map((s) => ({ id: s.id, name: s.name, kind: s.kind, capacity: s.capacity }));
      timeZone = chosen.timeZone || timeZone;
    } catch (error) {
      if (!signal.aborted) status.error(describe(error));
      return;
    }
    zoneNote.textContent = `Times are the venue's local time (${timeZone}).`;
    if (event?.priceTiers.length) for (const tier of event.priceTiers) renderTier(tier);
    else renderTier({ name: "Standard", sectionIds: venueSections.map((s) => s.id) });
  };
  venue.addEventListener("change", () => void loadVenue());
  addTier.addEventListener("click", () => renderTier());
  await loadVenue();
  start.value = toWallClock(event?.startTime, timeZone).slice(0, 16);
  end.value = toWallClock(event?.endTime, timeZone).slice(0, 16);
  onSale.value = toWallClock(event?.onSaleTime, timeZone).slice(0, 16);
  start.addEventListener("change", () => {
    // A sensible default: three hours after the start.
    if (!end.value && start.value) end.value = toWallClock(timestampFromDate(new Date(timestampDate(fromWallClock(start.value, timeZone)!).getTime() + 3 * 3_600_000)), timeZone).slice(0, 16);
  });

  const performerIds = async (): Promise<string[]> => {
    const names = performers.value.split(",").map((n) => n.trim()).filter(Boolean);
    const ids: string[] = [];
    for (const name of names) {
      let id = known.performers.get(name.toLowerCase());
      if (!id) {
        const created = await catalog.createPerformer({ performer: { name, description: "", genre: "" } }, { signal });
        id = created.id;
        known.performers.set(name.toLowerCase(), id);
      }
      ids.push(id);
    }
    return ids;
  };

  const priceTiers = (): MessageInitShape<typeof PriceTierSchema>[] => {
    const code = currency.value.trim().toUpperCase();
    return tiers.map((tier) => ({
      id: tier.id,
      name: tier.name.value.trim(),
      price: { currencyCode: code, amountMinor: BigInt(Math.round(Number(tier.price.value) * 100)) },
      sectionIds: tier.sections.filter((box) => box.checked).map((box) => box.value),
    }));
  };

  const form = h(
    "form",
    {
      class: "editor",
      onsubmit: async (e: globalThis.Event) => {
        e.preventDefault();
        save.disabled = true;
        status.info(event ? "Saving…" : "Creating the draft…");
        try {
          const fields = {
            title: title.value.trim(),
            description: description.value.trim(),
            category: Number(category.value) as Category,
            performerIds: await performerIds(),
            startTime: fromWallClock(start.value, timeZone),
            endTime: fromWallClock(end.value, timeZone),
            onSaleTime: fromWallClock(onSale.value, timeZone),
          };
          if (!event) {
            const created = await catalog.createEvent({ event: { ...fields, venueId: venue.value, priceTiers: priceTiers() } }, { signal });
            navigate(`/organiser/events/${created.id}?saved=created`, { replace: true });
          } else {
            const paths = ["title", "description", "category", "performer_ids", "start_time", "end_time"];
            if (fields.onSaleTime) paths.push("on_sale_time");
            if (draft) paths.push("price_tiers");
            await catalog.updateEvent({ event: { id: event.id, ...fields, priceTiers: draft ? priceTiers() : [] }, updateMask: { paths } }, { signal });
            navigate(`/organiser/events/${event.id}?saved=updated`, { replace: true });
          }
        } catch (error) {
          if (!signal.aborted) status.error(describe(error));
          save.disabled = false;
        }
      },
    },
    h("h1", {}, event ? `Edit: ${event.title}` : "New event"),
    event ? h("p", { class: "badge", id: "event-status" }, STATUS_NAMES[event.status] ?? "") : null,
    field("Title", title),
    field("Description", description),
    field("Category", category),
    field("Venue", venue, event ? "A venue cannot change once the event exists." : "Not listed? Create it from a seat-map file first."),
    field("Performers", performers, "Names separated by commas, headliner first; new names are added as performers."),
    zoneNote,
    field("Starts", start),
    field("Ends", end),
    field("On sale from", onSale, "Empty: on sale when published."),
    h(
      "fieldset",
      {},
      h("legend", {}, "Prices"),
      draft ? null : h("p", { class: "hint" }, "Prices are fixed once an event is published."),
      field("Currency", currency, "ISO code, e.g. GBP, EUR, USD."),
      tiersBody,
      addTier,
    ),
    save,
  );
  root.append(form);
  const saved = params.get("saved");
  if (params.get("created") === "venue") status.info("Venue created. Now create an event there.");
  if (saved) status.info(saved === "created" ? "Draft created. Publish it when it is ready." : "Changes saved.");
  if (!event) return;

  // Publish, cancel, waiting room: what happens to an existing event.
  const panel = h(
    "section",
    { class: "lifecycle", "aria-labelledby": "lifecycle-heading" },
    h("h2", { id: "lifecycle-heading" }, "Sales"),
    h("p", {}, link(`/organiser/events/${event.id}/sales`, "Sales figures (live)")),
  );
  root.append(panel);
  const current = event;
  if (current.status === EventStatus.DRAFT) {
    const publish = h("button", { type: "button", class: "primary", id: "publish" }, "Publish");
    publish.addEventListener("click", async () => {
      publish.disabled = true;
      try {
        await catalog.publishEvent({ id: current.id }, { signal });
        navigate(`/organiser/events/${current.id}?saved=published`, { replace: true });
      } catch (error) {
        if (!signal.aborted) status.error(describe(error));
        publish.disabled = false;
      }
    });
    panel.append(h("p", {}, "Buyers cannot see a draft. Publishing puts it in search and on sale (from its on-sale time)."), publish);
  }
  if (saved === "published") status.info("Published: the event is in search and on sale.");
  if (current.status === EventStatus.PUBLISHED) {
    panel.append(h("p", {}, link(`/events/${current.id}`, "See the buyer's page")));
    const enabled = h("input", { type: "checkbox", id: "wr-enabled", checked: true });
    const rate = h("input", { id: "wr-rate", type: "number", min: 1, max: 100000, value: 10, required: true, inputmode: "numeric" });
    const opens = h("input", { id: "wr-open", type: "datetime-local", step: 1 });
    const result = h("p", { id: "wr-result", "aria-live": "polite" });
    const apply = h("button", { type: "submit", id: "wr-apply" }, "Apply");
    panel.append(
      h(
        "form",
        {
          class: "waiting-room",
          onsubmit: async (e: globalThis.Event) => {
            e.preventDefault();
            apply.disabled = true;
            try {
              const room = await configureRoom(current.id, enabled.checked, Number(rate.value), fromWallClock(opens.value, timeZone), signal);
              result.textContent = room.enabled
                ? `Waiting room on: ${room.admissionRatePerSecond} buyers let through per second${room.openTime ? ` from ${when(room.openTime, timeZone)}` : ""}. ${room.joinedCount} joined, ${room.admittedCount} let through.`
                : "Waiting room off: buyers pick seats directly.";
            } catch (error) {
              if (!signal.aborted) status.error(describe(error));
            }
            apply.disabled = false;
          },
        },
        h("h3", {}, "Waiting room"),
        h("p", { class: "hint" }, "For a busy on-sale: buyers line up and are let through at this rate. Nobody loses their place when the rate changes."),
        h("label", { class: "check" }, enabled, " Waiting room on"),
        field("Buyers let through per second", rate),
        field("Opens at (venue time, optional)", opens, "Buyers can line up before this; nobody is let through until then."),
        apply,
        result,
      ),
    );
  }
  if (current.status !== EventStatus.CANCELLED) {
    const reason = h("input", { id: "cancel-reason", required: true, maxlength: 500 });
    const cancel = h("button", { type: "submit", class: "danger", id: "cancel-event" }, "Cancel the event");
    panel.append(
      h(
        "form",
        {
          class: "cancel-event",
          onsubmit: async (e: globalThis.Event) => {
            e.preventDefault();
            if (!window.confirm(`Cancel “${current.title}”? Sales stop at once and this cannot be undone.`)) return;
            cancel.disabled = true;
            try {
              await catalog.cancelEvent({ id: current.id, reason: reason.value.trim() }, { signal });
              navigate(`/organiser/events/${current.id}?saved=cancelled`, { replace: true });
            } catch (error) {
              if (!signal.aborted) status.error(describe(error));
              cancel.disabled = false;
            }
          },
        },
        h("h3", {}, "Cancel the event"),
        field("Reason buyers will see", reason),
        cancel,
      ),
    );
  } else {
    panel.append(h("p", { class: "status error" }, `Cancelled: ${current.cancelReason}`));
  }
  if (saved === "cancelled") status.info("The event is cancelled.");
}

function configureRoom(eventId: string, enabled: boolean, rate: number, openTime: Timestamp | undefined, signal: AbortSignal) {
  return waitingRoom.configureWaitingRoom({ eventId, enabled, admissionRatePerSecond: enabled ? rate : 0, openTime }, { signal });
}
