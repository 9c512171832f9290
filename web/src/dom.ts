// A small element builder (no innerHTML for data), the client-side router's
// navigate(), and the status line pages show errors in.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

export function navigate(path: string, options: { replace?: boolean } = {}): void {
  if (options.replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.dispatchEvent(new Event("navigate"));
}

/** A link the router handles without reloading the page. */
export function link(path: string, ...children: Child[]): HTMLAnchorElement {
  return h("a", { href: path, "data-link": true }, ...children);
}

/** An ARIA live region for a page's errors and progress. */
export function statusLine(): { element: HTMLElement; error(text: string): void; info(text: string): void; clear(): void } {
  const element = h("p", { class: "status", role: "status", "aria-live": "polite" });
  return {
    element,
    error(text) {
      element.textContent = text;
      element.className = "status error";
      element.setAttribute("role", "alert");
    },
    info(text) {
      element.textContent = text;
      element.className = "status info";
      element.setAttribute("role", "status");
    },
    clear() {
      element.textContent = "";
      element.className = "status";
    },
  };
}

/** A labelled form field: the label, then the control, in one block. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("small", { id: hintId, class: "hint" }, hint) : null);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = window.setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      window.clearTimeout(timer);
      resolve();
    });
  });
}

export function uuid(): string {
  return crypto.randomUUID();
}
