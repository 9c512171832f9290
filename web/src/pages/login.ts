// Log in (AccountsService.Login); the token lives in localStorage until it
// expires. The demo customer's credentials are offered on the page.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { accounts, describe, setSession } from "../api";
import { h, navigate, statusLine } from "../dom";

const DEMO_EMAIL = "customer@demo.boxoffice.dev";
const DEMO_PASSWORD = "boxoffice-demo";

export function loginPage(root: HTMLElement, signal: AbortSignal, params: URLSearchParams): void {
  document.title = "Log in · boxoffice";
  const next = params.get("next") ?? "/";
  const status = statusLine();
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: async (e: globalThis.Event) => {
        e.preventDefault();
        submit.disabled = true;
        status.info("Logging in…");
        try {
          const answer = await accounts.login({ email: email.value.trim(), password: password.value }, { signal });
          setSession({
            token: answer.accessToken,
            email: email.value.trim(),
            expiresAt: answer.expireTime ? timestampDate(answer.expireTime).getTime() : Date.now() + 10 * 60_000,
          });
          // Only paths of this app: never an open redirect.
          navigate(next.startsWith("/") && !next.startsWith("//") ? next : "/");
        } catch (error) {
          if (!signal.aborted) status.error(describe(error));
          submit.disabled = false;
        }
      },
    },
    h("h1", {}, "Log in"),
    h("label", { for: "email" }, "Email"),
    email,
    h("label", { for: "password" }, "Password"),
    password,
    submit,
    status.element,
    h(
      "p",
      { class: "hint" },
      "Trying it out? ",
      h(
        "button",
        {
          type: "button",
          class: "link",
          id: "use-demo",
          onclick: () => {
            email.value = DEMO_EMAIL;
            password.value = DEMO_PASSWORD;
          },
        },
        "Use the demo customer",
      ),
      ` (${DEMO_EMAIL} / ${DEMO_PASSWORD}).`,
    ),
  );
  root.append(form);
  email.focus();
}
