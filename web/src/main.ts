// The app shell: a client-side router over the History API and the account
// links in the header. Every page gets an AbortSignal that fires when the
// user leaves it, so streams (live seat maps) close with the page.
import "./style.css";
import { session, setSession } from "./api";
import { h, link, navigate } from "./dom";
import { homePage } from "./pages/home";
import { eventPage } from "./pages/event";
import { loginPage } from "./pages/login";
import { checkoutPage } from "./pages/checkout";
import { bookingsPage } from "./pages/bookings";

export type Page = (root: HTMLElement, signal: AbortSignal, params: URLSearchParams) => void | Promise<void>;

const routes: [RegExp, (match: RegExpMatchArray) => Page][] = [
  [/^\/$/, () => homePage],
  [/^\/events\/([0-9a-f-]{36})$/, (m) => (root, signal) => eventPage(root, signal, m[1])],
  [/^\/login$/, () => loginPage],
  [/^\/checkout\/([0-9a-f-]{36})$/, (m) => (root, signal) => checkoutPage(root, signal, m[1])],
  [/^\/bookings$/, () => bookingsPage],
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
      link("/bookings", "My bookings"),
      h("span", { class: "who" }, current.email),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: () => {
            setSession(null);
            navigate("/");
          },
        },
        "Log out",
      ),
    );
  } else {
    nav.replaceChildren(link(`/login?next=${encodeURIComponent(location.pathname)}`, "Log in"));
  }
}

document.addEventListener("click", (event) => {
  const target = (event.target as Element | null)?.closest("a[data-link]");
  if (!(target instanceof HTMLAnchorElement)) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(target.pathname + target.search);
});
window.addEventListener("popstate", render);
window.addEventListener("navigate", () => {
  render();
  renderAccount();
  app.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});
window.addEventListener("session", renderAccount);
renderAccount();
render();
