// The app shell: a client-side router over the History API and the account
// links in the header. Every page gets an AbortSignal that fires when the
// user leaves it, so streams (live seat maps, the queue) close with the page.
import "./style.css";
import { isAdmin, session, setSession } from "./api";
import { h, link, navigate } from "./dom";
import { homePage } from "./pages/home";
import { eventPage } from "./pages/event";
import { loginPage, registerPage } from "./pages/login";
import { checkoutPage } from "./pages/checkout";
import { ticketsPage } from "./pages/bookings";
import { queuePage } from "./pages/queue";
import { waitlistPage } from "./pages/waitlist";
import { adminPage, eventEditorPage, venueEditorPage } from "./pages/admin";
import { salesByDatePage, salesPage } from "./pages/sales";

export type Page = (root: HTMLElement, signal: AbortSignal, params: URLSearchParams) => void | Promise<void>;

const UUID = "([0-9a-f-]{36})";
const routes: [RegExp, (match: RegExpMatchArray) => Page][] = [
  [/^\/$/, () => homePage],
  [new RegExp(`^/events/${UUID}$`), (m) => (root, signal) => eventPage(root, signal, m[1])],
  [new RegExp(`^/events/${UUID}/queue$`), (m) => (root, signal) => queuePage(root, signal, m[1])],
  [new RegExp(`^/events/${UUID}/waitlist$`), (m) => (root, signal) => waitlistPage(root, signal, m[1])],
  [/^\/login$/, () => loginPage],
  [/^\/register$/, () => registerPage],
  [new RegExp(`^/checkout/${UUID}$`), (m) => (root, signal) => checkoutPage(root, signal, m[1])],
  [/^\/(tickets|bookings)$/, () => ticketsPage],
  [/^\/organiser$/, () => adminPage],
  [/^\/organiser\/venues\/new$/, () => venueEditorPage],
  [/^\/organiser\/events\/new$/, () => (root, signal) => eventEditorPage(root, signal, undefined)],
  [new RegExp(`^/organiser/events/${UUID}$`), (m) => (root, signal) => eventEditorPage(root, signal, m[1])],
  [new RegExp(`^/organiser/events/${UUID}/sales$`), (m) => (root, signal) => salesPage(root, signal, m[1])],
  [/^\/organiser\/sales$/, () => salesByDatePage],
];

const app = document.getElementById("app") as HTMLElement;
let leave: AbortController | null = null;

function render(): void {
  leave?.abort();
  leave = new AbortController();
  app.replaceChildren();
  const path = window.location.pathname;
  const params = new URLSearchParams(window.location.search);
  for (const [pattern, page] of routes) {
    const match = path.match(pattern);
    if (match) {
      void page(match)(app, leave.signal, params);
      return;
    }
  }
  document.title = "Not found · boxoffice";
  app.append(h("h1", {}, "Page not found"), h("p", {}, link("/", "Back to events")));
}

function renderAccount(): void {
  const nav = document.getElementById("account") as HTMLElement;
  const current = session();
  if (current) {
    nav.replaceChildren(
      ...(isAdmin() ? [link("/organiser", "Organiser")] : []),
      link("/tickets", "My tickets"),
      h("span", { class: "who" }, current.name || current.email),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            // Dropping the token is all a log-out is until the server keeps sessions.
            setSession(null);
            navigate("/");
          },
        },
        "Log out",
      ),
    );
  } else {
    const next = encodeURIComponent(location.pathname);
    nav.replaceChildren(link(`/login?next=${next}`, "Log in"), link(`/register?next=${next}`, "Register"));
  }
}

document.addEventListener("click", (event) => {
  const target = (event.target as Element | null)?.closest("a[data-link]");
  if (!(target instanceof HTMLAnchorElement)) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(target.pathname + target.search);
});
window.addEventListener("popstate", () => {
  render();
  renderAccount();
});
window.addEventListener("navigate", () => {
  render();
  renderAccount();
  app.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});
window.addEventListener("session", renderAccount);
renderAccount();
render();
