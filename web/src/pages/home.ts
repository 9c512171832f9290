// Home: upcoming events (ListEvents), and SearchEvents as the user types
// (typo tolerant, matched words highlighted) with suggestions under the box,
// filters (dates, city, category) and "near me" from the browser's location.
// The query and filters live in the address, so a search can be shared.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { catalog, describe, when } from "../api";
import { h, link, navigate, statusLine } from "../dom";
import { Category, SearchSort, type Event, type SearchEventsRequestSchema, type SearchHit } from "../gen/boxoffice/catalog/v1/catalog_pb";

export const CATEGORY_NAMES: Record<number, string> = {
  [Category.CONCERT]: "Concert",
  [Category.SPORTS]: "Sports",
  [Category.THEATER]: "Theatre",
  [Category.COMEDY]: "Comedy",
  [Category.FILM]: "Film",
  [Category.FAMILY]: "Family",
  [Category.FESTIVAL]: "Festival",
};

/** Server-highlighted text: HTML-escaped except for <em> around matches. */
function highlighted(html: string): HTMLElement {
  const span = h("span");
  // The catalog escapes everything and adds only <em></em>; keep exactly that.
  const parts = html.split(/(<em>|<\/em>)/);
  let inside = false;
  for (const part of parts) {
    if (part === "<em>") inside = true;
    else if (part === "</em>") inside = false;
    else if (part) {
      // A textarea's content is plain text: entities decode, nothing runs.
      const decoder = document.createElement("textarea");
      decoder.innerHTML = part;
      const text = decoder.value;
      span.append(inside ? h("mark", {}, text) : text);
    }
  }
  return span;
}

function plain(html: string): string {
  return highlighted(html).textContent ?? "";
}

/** "★ 4.3/5 (12 reviews)": how the event's performers are rated, if at all. */
function stars(average: number, count: number): HTMLElement | null {
  if (count === 0) return null;
  return h(
    "p",
    { class: "rating", title: "Reviews of the performers' shows" },
    h("span", { "aria-hidden": "true" }, "★ "),
    `${average.toFixed(1)}/5 (${count} review${count === 1 ? "" : "s"})`,
  );
}

function card(event: Event, title?: string, performers?: string[], distanceKm?: number, rating?: HTMLElement | null): HTMLElement {
  return h(
    "li",
    { class: "card" },
    h("p", { class: "category" }, CATEGORY_NAMES[event.category] ?? ""),
    h("h3", {}, link(`/events/${event.id}`, title ? highlighted(title) : event.title)),
    h("p", { class: "when" }, when(event.startTime, event.timeZone)),
    h("p", { class: "where" }, event.venue ? `${event.venue.name}, ${event.venue.city}` : ""),
    distanceKm !== undefined ? h("p", { class: "distance" }, `${distanceKm < 10 ? distanceKm.toFixed(1) : Math.round(distanceKm)} km away`) : null,
    performers?.length ? h("p", { class: "with" }, "With ", ...performers.flatMap((p, i) => [i ? ", " : "", highlighted(p)])) : null,
    rating ?? null,
  );
}

function hitCards(hits: SearchHit[], withDistance: boolean): HTMLElement[] {
  return hits.flatMap((hit) =>
    hit.event
      ? [
          card(
            hit.event,
            hit.highlightedTitle,
            hit.highlightedPerformers,
            withDistance ? hit.distanceKm : undefined,
            stars(hit.performersRating, hit.performersRatingCount),
          ),
        ]
      : [],
  );
}

interface Suggestion {
  label: Node;
  text: string;
  eventId?: string;
}

export async function homePage(root: HTMLElement, signal: AbortSignal, params: URLSearchParams): Promise<void> {
  document.title = "Upcoming events · boxoffice";
  const status = statusLine();
  const list = h("ul", { class: "cards", "aria-label": "Events" });
  const heading = h("h2", { id: "results-heading" }, "Upcoming events");
  const suggestions = h("ul", { id: "suggestions", role: "listbox", class: "suggestions", "aria-label": "Suggestions", hidden: true });
  const input = h("input", {
    type: "search",
    id: "search",
    name: "q",
    placeholder: "Artist, team, show, venue or city",
    autocomplete: "off",
    role: "combobox",
    "aria-autocomplete": "list",
    "aria-expanded": "false",
    "aria-controls": "suggestions",
  });
  input.value = params.get("q") ?? "";
  const from = h("input", { type: "date", id: "from", name: "from", value: params.get("from") ?? "" });
  const until = h("input", { type: "date", id: "until", name: "until", value: params.get("until") ?? "" });
  const city = h("select", { id: "city", name: "city" }, h("option", { value: "" }, "Any city"));
  const category = h(
    "select",
    { id: "category", name: "category" },
    h("option", { value: "" }, "Any category"),
    ...Object.entries(CATEGORY_NAMES).map(([value, name]) => h("option", { value }, name)),
  );
  category.value = params.get("category") ?? "";
  const radius = h(
    "select",
    { id: "radius", name: "radius" },
    ...[10, 50, 200, 1000].map((km) => h("option", { value: km }, `within ${km} km`)),
  );
  radius.value = "50";
  const rating = h(
    "select",
    { id: "rating", name: "rating" },
    h("option", { value: "" }, "Any rating"),
    ...["3", "4", "4.5"].map((stars) => h("option", { value: stars }, `★ ${stars} and up`)),
  );
  rating.value = params.get("rating") ?? "";
  const order = h(
    "select",
    { id: "order", name: "order" },
    h("option", { value: "" }, "Best match"),
    h("option", { value: "rating" }, "Best rated"),
  );
  order.value = params.get("order") ?? "";
  const nearButton = h("button", { type: "button", id: "near-me", "aria-pressed": "false" }, "Near me");
  const clear = h("button", { type: "button", class: "link", id: "clear-filters" }, "Clear filters");
  let near: { latitude: number; longitude: number } | null = null;
  // The next page of whatever the list shows now.
  const more = h("button", { type: "button", id: "more", class: "more", hidden: true }, "Show more events");
  let nextPage: ((signal: AbortSignal) => Promise<void>) | null = null;

  root.append(
    h(
      "section",
      { class: "hero" },
      h("h1", {}, "Find your next night out"),
      h(
        "form",
        { role: "search", class: "search", onsubmit: (e: globalThis.Event) => e.preventDefault() },
        h("label", { for: "search" }, "Search events"),
        h("div", { class: "combo" }, input, suggestions),
        h(
          "fieldset",
          { class: "filters" },
          h("legend", {}, "Filters"),
          h("div", { class: "field" }, h("label", { for: "from" }, "From"), from),
          h("div", { class: "field" }, h("label", { for: "until" }, "Until"), until),
          h("div", { class: "field" }, h("label", { for: "city" }, "City"), city),
          h("div", { class: "field" }, h("label", { for: "category" }, "Category"), category),
          h("div", { class: "field near" }, h("label", { for: "radius" }, "Distance"), h("div", { class: "row" }, nearButton, radius)),
          h("div", { class: "field" }, h("label", { for: "rating" }, "Rating"), rating),
          h("div", { class: "field" }, h("label", { for: "order" }, "Order"), order),
          clear,
        ),
      ),
    ),
    status.element,
    h("section", { "aria-labelledby": "results-heading" }, heading, list, more),
  );

  // Cities come from the search engine's facets over every upcoming event.
  void catalog
    .searchEvents({ query: "", pageSize: 1 }, { signal })
    .then((answer) => {
      const wanted = params.get("city") ?? "";
      for (const facet of [...answer.cityFacets].sort((a, b) => a.value.localeCompare(b.value))) {
        city.append(h("option", { value: facet.value }, `${facet.value} (${facet.count})`));
      }
      city.value = wanted;
    })
    .catch(() => undefined);

  const filtered = () => Boolean(from.value || until.value || city.value || category.value || rating.value || order.value || near);

  const request = (pageSize: number): MessageInitShape<typeof SearchEventsRequestSchema> => ({
    query: input.value.trim(),
    pageSize,
    startAfter: from.value ? timestampFromDate(new Date(`${from.value}T00:00:00`)) : undefined,
    startBefore: until.value ? timestampFromDate(new Date(new Date(`${until.value}T00:00:00`).getTime() + 86_400_000)) : undefined,
    city: city.value,
    category: category.value ? (Number(category.value) as Category) : Category.UNSPECIFIED,
    near: near ?? undefined,
    radiusKm: near ? Number(radius.value) : 0,
    minRating: rating.value ? Number(rating.value) : 0,
    sort:
      order.value === "rating"
        ? SearchSort.RATING
        : near
          ? SearchSort.DISTANCE
          : input.value.trim()
            ? SearchSort.RELEVANCE
            : SearchSort.START_TIME,
  });

  const remember = () => {
    const query = new URLSearchParams();
    if (input.value.trim()) query.set("q", input.value.trim());
    if (from.value) query.set("from", from.value);
    if (until.value) query.set("until", until.value);
    if (city.value) query.set("city", city.value);
    if (category.value) query.set("category", category.value);
    if (rating.value) query.set("rating", rating.value);
    if (order.value) query.set("order", order.value);
    const search = query.toString();
    history.replaceState(null, "", search ? `/?${search}` : "/");
  };

  // Suggestions: an ARIA combobox; arrows move, Enter opens, Escape closes.
  let options: Suggestion[] = [];
  let active = -1;
  const closeSuggestions = () => {
    suggestions.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };
  const renderSuggestions = () => {
    suggestions.replaceChildren(
      ...options.map((option, i) =>
        h(
          "li",
          {
            id: `suggestion-${i}`,
            role: "option",
            "aria-selected": i === active ? "true" : "false",
            onmousedown: (e: globalThis.Event) => e.preventDefault(),
            onclick: () => choose(i),
          },
          option.label,
        ),
      ),
    );
    const open = options.length > 0 && document.activeElement === input;
    suggestions.hidden = !open;
    input.setAttribute("aria-expanded", String(open));
    if (active >= 0) input.setAttribute("aria-activedescendant", `suggestion-${active}`);
    else input.removeAttribute("aria-activedescendant");
  };
  const choose = (i: number) => {
    const option = options[i];
    if (!option) return;
    closeSuggestions();
    if (option.eventId) navigate(`/events/${option.eventId}`);
    else {
      input.value = option.text;
      void show();
    }
  };
  input.addEventListener("keydown", (e) => {
    if (suggestions.hidden || options.length === 0) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      active = (active + (e.key === "ArrowDown" ? 1 : -1) + options.length + 1) % (options.length + 1);
      if (active === options.length) active = -1;
      renderSuggestions();
    } else if (e.key === "Enter" && active >= 0) {
      e.preventDefault();
      choose(active);
    } else if (e.key === "Escape") {
      closeSuggestions();
    }
  });
  input.addEventListener("blur", closeSuggestions);

  let generation = 0;
  const show = async (withSuggestions = false) => {
    const mine = ++generation;
    list.setAttribute("aria-busy", "true");
    remember();
    const query = input.value.trim();
    try {
      if (!query && !filtered()) {
        const answer = await catalog.listEvents({ pageSize: 24 }, { signal });
        if (mine !== generation) return;
        heading.textContent = "Upcoming events";
        list.replaceChildren(...answer.events.map((event) => card(event)));
        options = [];
        let token = answer.nextPageToken;
        nextPage = token
          ? async (signal) => {
              const page = await catalog.listEvents({ pageSize: 24, pageToken: token }, { signal });
              if (mine !== generation) return;
              list.append(...page.events.map((event) => card(event)));
              token = page.nextPageToken;
              if (!token) nextPage = null;
            }
          : null;
      } else {
        const asked = request(24);
        const answer = await catalog.searchEvents(asked, { signal });
        if (mine !== generation) return;
        // A short page is the last one, whatever the token says.
        let token = answer.hits.length === asked.pageSize ? answer.nextPageToken : "";
        nextPage = token
          ? async (signal) => {
              const page = await catalog.searchEvents({ ...asked, pageToken: token }, { signal });
              if (mine !== generation) return;
              list.append(...hitCards(page.hits, Boolean(near)));
              token = page.hits.length === asked.pageSize ? page.nextPageToken : "";
              if (!token) nextPage = null;
            }
          : null;
        const count = `${answer.estimatedTotalHits} event${answer.estimatedTotalHits === 1n ? "" : "s"}`;
        heading.textContent = query ? `${count} for “${query}”` : `${count}${near ? " near you" : ""}`;
        list.replaceChildren(...hitCards(answer.hits, Boolean(near)));
        // Suggestions: the performers the words matched, then the best events.
        const performers = new Map<string, string>();
        for (const hit of answer.hits) {
          for (const name of hit.highlightedPerformers) if (name.includes("<em>") && !performers.has(plain(name))) performers.set(plain(name), name);
        }
        options = query
          ? [
              ...[...performers].slice(0, 3).map(([text, html]) => ({ text, label: h("span", {}, highlighted(html), h("small", {}, " · artist")) })),
              ...answer.hits.slice(0, 5).flatMap((hit) =>
                hit.event
                  ? [{ text: hit.event.title, eventId: hit.event.id, label: h("span", {}, highlighted(hit.highlightedTitle), h("small", {}, ` · ${when(hit.event.startTime, hit.event.timeZone)}`)) }]
                  : [],
              ),
            ]
          : [];
      }
      more.hidden = !nextPage;
      active = -1;
      if (withSuggestions) renderSuggestions();
      else closeSuggestions();
      if (list.childElementCount === 0) list.append(h("li", { class: "empty" }, "Nothing found. Try fewer words or other filters."));
      status.clear();
    } catch (error) {
      if (signal.aborted || mine !== generation) return;
      status.error(describe(error));
    } finally {
      if (mine === generation) list.removeAttribute("aria-busy");
    }
  };

  more.addEventListener("click", async () => {
    if (!nextPage) return;
    const mine = generation;
    more.disabled = true;
    try {
      await nextPage(signal);
    } catch (error) {
      if (!signal.aborted) status.error(describe(error));
    }
    if (mine === generation) more.hidden = !nextPage;
    more.disabled = false;
  });

  let timer: number | undefined;
  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    if (!input.value.trim()) closeSuggestions();
    timer = window.setTimeout(() => void show(true), 150);
  });
  for (const control of [from, until, city, category, radius, rating, order]) control.addEventListener("change", () => void show());
  clear.addEventListener("click", () => {
    from.value = until.value = city.value = category.value = rating.value = order.value = "";
    near = null;
    nearButton.setAttribute("aria-pressed", "false");
    void show();
  });
  nearButton.addEventListener("click", () => {
    if (near) {
      near = null;
      nearButton.setAttribute("aria-pressed", "false");
      void show();
      return;
    }
    if (!("geolocation" in navigator)) {
      status.error("This browser cannot tell where you are.");
      return;
    }
    status.info("Finding where you are…");
    navigator.geolocation.getCurrentPosition(
      (position) => {
        if (signal.aborted) return;
        near = { latitude: position.coords.latitude, longitude: position.coords.longitude };
        nearButton.setAttribute("aria-pressed", "true");
        void show();
      },
      (error) => {
        if (signal.aborted) return;
        status.error(
          error.code === error.PERMISSION_DENIED
            ? "Location is blocked for this site. Allow it in the browser to see events near you."
            : "Your location is not available right now.",
        );
      },
      { timeout: 10_000, maximumAge: 600_000 },
    );
  });
  await show();
}
