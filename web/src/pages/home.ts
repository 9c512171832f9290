// Home: upcoming events (ListEvents) and a search box that asks SearchEvents
// as the user types (typo tolerant, matched words highlighted).
import { catalog, describe, when } from "../api";
import { h, link, statusLine } from "../dom";
import { Category, type Event } from "../gen/boxoffice/catalog/v1/catalog_pb";

const CATEGORY_NAMES: Record<number, string> = {
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

function card(event: Event, title?: string, performers?: string[]): HTMLElement {
  return h(
    "li",
    { class: "card" },
    h("p", { class: "category" }, CATEGORY_NAMES[event.category] ?? ""),
    h("h3", {}, link(`/events/${event.id}`, title ? highlighted(title) : event.title)),
    h("p", { class: "when" }, when(event.startTime, event.timeZone)),
    h("p", { class: "where" }, event.venue ? `${event.venue.name}, ${event.venue.city}` : ""),
    performers?.length ? h("p", { class: "with" }, "With ", ...performers.flatMap((p, i) => [i ? ", " : "", highlighted(p)])) : null,
  );
}

export async function homePage(root: HTMLElement, signal: AbortSignal): Promise<void> {
  document.title = "Upcoming events · boxoffice";
  const status = statusLine();
  const list = h("ul", { class: "cards", "aria-label": "Events" });
  const heading = h("h2", { id: "results-heading" }, "Upcoming events");
  const input = h("input", {
    type: "search",
    id: "search",
    name: "q",
    placeholder: "Artist, team, show, venue or city",
    autocomplete: "off",
  });
  root.append(
    h("section", { class: "hero" },
      h("h1", {}, "Find your next night out"),
      h("form", { role: "search", class: "search", onsubmit: (e: globalThis.Event) => e.preventDefault() },
        h("label", { for: "search" }, "Search events"),
        input,
      ),
    ),
    status.element,
    h("section", { "aria-labelledby": "results-heading" }, heading, list),
  );

  let generation = 0;
  const show = async (query: string) => {
    const mine = ++generation;
    try {
      if (query.trim() === "") {
        const answer = await catalog.listEvents({ pageSize: 24 }, { signal });
        if (mine !== generation) return;
        heading.textContent = "Upcoming events";
        list.replaceChildren(...answer.events.map((event) => card(event)));
      } else {
        const answer = await catalog.searchEvents({ query, pageSize: 24 }, { signal });
        if (mine !== generation) return;
        heading.textContent = `${answer.estimatedTotalHits} result${answer.estimatedTotalHits === 1n ? "" : "s"} for “${query}”`;
        list.replaceChildren(
          ...answer.hits.flatMap((hit) => (hit.event ? [card(hit.event, hit.highlightedTitle, hit.highlightedPerformers)] : [])),
        );
      }
      if (list.childElementCount === 0) list.append(h("li", { class: "empty" }, "Nothing found."));
      status.clear();
    } catch (error) {
      if (signal.aborted || mine !== generation) return;
      status.error(describe(error));
    }
  };

  let timer: number | undefined;
  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void show(input.value), 150);
  });
  await show("");
}
