// The API clients (grpc-web through the edge on the page's own origin), the
// signed-in session, and readable messages from google.rpc.ErrorInfo reasons.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { CatalogService } from "./gen/boxoffice/catalog/v1/catalog_pb";
import { InventoryService, WaitingRoomService } from "./gen/boxoffice/inventory/v1/inventory_pb";
import { CheckoutService } from "./gen/boxoffice/checkout/v1/checkout_pb";
import { WaitlistService } from "./gen/boxoffice/inventory/v1/waitlist_pb";
import { AccountsService } from "./gen/boxoffice/accounts/v1/accounts_pb";
import { StatsService } from "./gen/boxoffice/stats/v1/stats_pb";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";

const SESSION_KEY = "boxoffice.session";

export interface Session {
  token: string;
  email: string;
  expiresAt: number;
  /** Display name, when the account has one. */
  name?: string;
  /** "admin" opens the organiser pages (the server checks every call anyway). */
  roles?: string[];
}

export function isAdmin(): boolean {
  return session()?.roles?.includes("admin") ?? false;
}

export function session(): Session | null {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as Session;
    if (typeof parsed.token !== "string" || parsed.expiresAt <= Date.now()) {
      localStorage.removeItem(SESSION_KEY);
      return null;
    }
    return parsed;
  } catch {
    return null;
  }
}

export function setSession(value: Session | null): void {
  if (value) localStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else localStorage.removeItem(SESSION_KEY);
  window.dispatchEvent(new Event("session"));
}

const withToken: Interceptor = (next) => async (request) => {
  const current = session();
  if (current) request.header.set("authorization", `Bearer ${current.token}`);
  try {
    return await next(request);
  } catch (error) {
    // A token the edge no longer accepts (it expired, or `boxoffice up` was
    // restarted with a new signing key) is dropped: the user logs in again
    // instead of every call failing.
    if (current && session()?.token === current.token) {
      const reason = reasonOf(error);
      if (reason === "TOKEN_INVALID" || reason === "TOKEN_EXPIRED") setSession(null);
    }
    throw error;
  }
};

const transport = createGrpcWebTransport({
  baseUrl: import.meta.env.VITE_API_URL ?? window.location.origin,
  interceptors: [withToken],
});

export const catalog = createClient(CatalogService, transport);
export const inventory = createClient(InventoryService, transport);
export const checkout = createClient(CheckoutService, transport);
export const accounts = createClient(AccountsService, transport);
export const waitingRoom = createClient(WaitingRoomService, transport);
export const stats = createClient(StatsService, transport);
export const waitlist = createClient(WaitlistService, transport);

/** The admission token WatchQueue gave this browser for an event, while it is valid. */
export function admission(eventId: string): string {
  try {
    const saved = JSON.parse(sessionStorage.getItem(`boxoffice.admission.${eventId}`) ?? "null") as { token: string; expiresAt: number } | null;
    return saved && saved.expiresAt > Date.now() ? saved.token : "";
  } catch {
    return "";
  }
}

export function setAdmission(eventId: string, token: string, expiresAt: number): void {
  if (token) sessionStorage.setItem(`boxoffice.admission.${eventId}`, JSON.stringify({ token, expiresAt }));
  else sessionStorage.removeItem(`boxoffice.admission.${eventId}`);
}

/** What a buyer should read for each ErrorInfo reason the services send. */
const REASONS: Record<string, string> = {
  SEAT_UNAVAILABLE: "Some of those seats were just taken. Pick others.",
  HOLD_EXPIRED: "Your hold ran out and the seats went back on sale.",
  HOLD_NOT_FOUND: "That hold no longer exists.",
  HOLD_RELEASED: "That hold was released.",
  HOLD_ALREADY_COMMITTED: "Those seats are already paid for.",
  EVENT_NOT_ON_SALE: "This event is not on sale.",
  EVENT_NOT_FOUND: "There is no such event.",
  SEAT_OUT_OF_RANGE: "That seat is not in this venue.",
  SEAT_NOT_FOR_SALE: "That seat is not for sale.",
  DUPLICATE_SEAT: "A seat was picked twice.",
  TOO_MANY_SEATS: "That is more seats than one order may hold.",
  TOO_MANY_HOLDS: "You already hold seats for this event. Finish or release that order first.",
  NO_SEATS_MATCH: "No seats are left that match.",
  ADMISSION_REQUIRED: "This event has a waiting room: join the queue first.",
  ADMISSION_TOKEN_INVALID: "Your place in the queue is not valid any more.",
  ADMISSION_TOKEN_EXPIRED: "Your turn from the queue ran out.",
  BAD_CREDENTIALS: "Wrong email or password.",
  TOO_MANY_ATTEMPTS: "Too many attempts. Wait a minute and try again.",
  LOGIN_REQUIRED: "Please log in.",
  TOKEN_INVALID: "Your session is not valid. Please log in again.",
  HOLD_NOT_ACTIVE: "Your hold is no longer active. Pick seats again.",
  EVENT_CANCELLED: "This event was cancelled.",
  BOOKING_NOT_PENDING: "This booking is already being paid or was closed.",
  BOOKING_NOT_CANCELLABLE: "This booking can no longer be cancelled.",
  REFUND_WINDOW_CLOSED: "It is too close to the event to cancel with a refund.",
  CONFIRMATION_IN_PROGRESS: "Your payment is still being processed.",
  UPSTREAM_UNAVAILABLE: "The service is unavailable. Try again in a moment.",
  UPSTREAM_OVERLOADED: "We are very busy right now. Try again in a moment.",
  EMAIL_TAKEN: "An account with that email exists already.",
  UNAUTHENTICATED: "Please log in.",
  TOKEN_EXPIRED: "Your session ended. Please log in again.",
  PERMISSION_DENIED: "You are not allowed to do that.",
  RATE_LIMITED: "Too many requests. Wait a moment and try again.",
  PAYMENT_DECLINED: "The card was declined.",
  PAYMENT_METHOD_UNAVAILABLE: "That way of paying is not available here. Pay with another method, such as a card.",
  PAYMENT_ACTION_REQUIRED: "Your bank or PayPal needs you to approve this payment first; your seats stay held meanwhile.",
  PROMO_CODE_UNKNOWN: "That promo code does not exist.",
  PROMO_CODE_EXPIRED: "That promo code has expired.",
  PROMO_CODE_NOT_YET_VALID: "That promo code is not valid yet.",
  PROMO_CODE_EXHAUSTED: "That promo code has been used up.",
  PROMO_CODE_USER_LIMIT: "You have already used that promo code as often as you may.",
  PROMO_CODE_WRONG_EVENT: "That promo code is not for these tickets.",
  PROMO_CODE_MIN_TICKETS: "That promo code needs more tickets in the order.",
  PROMO_CODE_NOT_APPLICABLE: "That promo code takes nothing off this order.",
  PROMO_CODE_ATTEMPTS_EXHAUSTED: "Too many promo codes tried. Wait a few minutes and try again.",
  DISCOUNT_EXCEEDS_TOTAL: "That discount is more than the order costs.",
  INSUFFICIENT_POINTS: "You do not have that many loyalty points.",
  BOOKING_EXPIRED: "This booking ran out before it was paid.",
  BOOKING_NOT_FOUND: "There is no such booking.",
  EVENT_NOT_SOLD_OUT: "Seats are still on sale for this event: pick yours instead of joining the waitlist.",
  WAITLIST_ENTRY_NOT_FOUND: "You are not on this event's waitlist.",
  WAITING_ROOM_OFF: "This event has no waiting room right now: pick your seats directly.",
  NOT_IN_QUEUE: "You are not in this event's queue yet.",
  IDEMPOTENCY_KEY_REUSED: "That request was already sent with other details. Reload the page and try again.",
  CONFIRMATION_INTERRUPTED: "Your payment was interrupted. Try paying again.",
  ADMIN_REQUIRED: "Only organisers can do that. Log in with an organiser account.",
  EVENT_NOT_DRAFT: "Prices can only change while the event is a draft.",
  EVENT_HAS_NO_PRICE_TIERS: "Add at least one price tier before publishing.",
  SEARCH_NOT_AVAILABLE: "Search is unavailable right now. Try again in a moment.",
  NOT_FOUND: "That could not be found. It may have been removed.",
  INTERNAL: "Something went wrong on our side. Try again in a moment.",
};

/** Field names as a person reads them, for INVALID_FIELD errors. */
function fieldName(field: string): string {
  const last = field.split(".").pop() ?? field;
  return last.replaceAll("_", " ").replace(/\[\d+\]/g, "");
}

/** The ErrorInfo reason of a failed call, if it carried one. */
export function reasonOf(error: unknown): string | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  return error.findDetails(ErrorInfoSchema)[0]?.reason || undefined;
}

/** A sentence for the person in front of the screen; never a code alone. */
export function describe(error: unknown): string {
  const reason = reasonOf(error);
  if (reason === "INVALID_FIELD" && error instanceof ConnectError) {
    // The BadRequest detail says which field and why; ErrorInfo names the field.
    const violation = error.findDetails(BadRequestSchema)[0]?.fieldViolations[0];
    const field = violation?.field || error.findDetails(ErrorInfoSchema)[0]?.metadata.field || "";
    const why = violation?.description || error.rawMessage.replace(/^[^:]*:\s*/, "");
    return `Please check ${fieldName(field) || "the form"}: ${why}.`.replace(/\.\.$/, ".");
  }
  if (reason && REASONS[reason]) return REASONS[reason];
  if (error instanceof ConnectError) {
    if (error.code === Code.Unauthenticated) return REASONS.UNAUTHENTICATED;
    if (error.code === Code.Unavailable) return "The service is unavailable. Try again in a moment.";
    const text = error.rawMessage || "Something went wrong.";
    const sentence = text.charAt(0).toUpperCase() + text.slice(1);
    return reason ? `${sentence} (${reason.toLowerCase().replaceAll("_", " ")})` : sentence;
  }
  if (error instanceof Error && error.message && !(error instanceof TypeError)) return error.message;
  return "Something went wrong. Check your connection and try again.";
}

export function isUnauthenticated(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Unauthenticated;
}

export function money(value: { currencyCode: string; amountMinor: bigint } | undefined): string {
  if (!value) return "";
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: value.currencyCode }).format(
      Number(value.amountMinor) / 100,
    );
  } catch {
    return `${(Number(value.amountMinor) / 100).toFixed(2)} ${value.currencyCode}`;
  }
}

export function when(time: Timestamp | undefined, timeZone?: string): string {
  if (!time) return "";
  try {
    return new Intl.DateTimeFormat(undefined, {
      dateStyle: "medium",
      timeStyle: "short",
      timeZone: timeZone || undefined,
    }).format(timestampDate(time));
  } catch {
    return timestampDate(time).toLocaleString();
  }
}
