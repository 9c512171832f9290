// Log in (AccountsService.Login) and register (Register, then Login); the
// token lives in localStorage until it expires or the user logs out. The
// demo customer's credentials are offered on the login page.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { accounts, describe, setSession } from "../api";
import { field, h, link, navigate, statusLine } from "../dom";
import { Role } from "../gen/boxoffice/accounts/v1/accounts_pb";

const DEMO_EMAIL = "customer@demo.boxoffice.dev";
const DEMO_PASSWORD = "boxoffice-demo";

/** Only paths of this app: never an open redirect. */
function safeNext(params: URLSearchParams): string {
  const next = params.get("next") ?? "/";
  return next.startsWith("/") && !next.startsWith("//") && next !== "/login" && next !== "/register" ? next : "/";
}

async function logIn(email: string, password: string, signal: AbortSignal): Promise<void> {
  const answer = await accounts.login({ email, password }, { signal });
  setSession({
    token: answer.accessToken,
    email: answer.user?.email || email,
    name: answer.user?.displayName || undefined,
    roles: (answer.user?.roles ?? []).map((role) => (role === Role.ADMIN ? "admin" : role === Role.CUSTOMER ? "customer" : "")).filter(Boolean),
    expiresAt: answer.expireTime ? timestampDate(answer.expireTime).getTime() : Date.now() + 10 * 60_000,
  });
}

export function loginPage(root: HTMLElement, signal: AbortSignal, params: URLSearchParams): void {
  document.title = "Log in · boxoffice";
  const next = safeNext(params);
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
          await logIn(email.value.trim(), password.value, signal);
          navigate(next);
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
    h("p", { class: "hint" }, "New here? ", link(`/register?next=${encodeURIComponent(next)}`, "Create an account"), "."),
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
      ` (${DEMO_EMAIL} / ${DEMO_PASSWORD}; the organiser is admin@demo.boxoffice.dev, same password).`,
    ),
  );
  root.append(form);
  email.focus();
}

export function registerPage(root: HTMLElement, signal: AbortSignal, params: URLSearchParams): void {
  document.title = "Create an account · boxoffice";
  const next = safeNext(params);
  const status = statusLine();
  const name = h("input", { id: "display-name", name: "name", autocomplete: "name", required: true, maxlength: 100 });
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "email", required: true, maxlength: 254 });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: 8,
    maxlength: 128,
  });
  const submit = h("button", { type: "submit", class: "primary" }, "Create account");
  root.append(
    h(
      "form",
      {
        class: "login",
        onsubmit: async (e: globalThis.Event) => {
          e.preventDefault();
          submit.disabled = true;
          status.info("Creating your account…");
          try {
            await accounts.register({ email: email.value.trim(), password: password.value, displayName: name.value.trim() }, { signal });
            await logIn(email.value.trim(), password.value, signal);
            navigate(next);
          } catch (error) {
            if (!signal.aborted) status.error(describe(error));
            submit.disabled = false;
          }
        },
      },
      h("h1", {}, "Create an account"),
      field("Your name", name),
      field("Email", email),
      field("Password", password, "8 to 128 characters."),
      submit,
      status.element,
      h("p", { class: "hint" }, "Have an account? ", link(`/login?next=${encodeURIComponent(next)}`, "Log in"), "."),
    ),
  );
  name.focus();
}
