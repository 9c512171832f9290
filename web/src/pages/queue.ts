// The waiting room of a busy event: JoinQueue gives the buyer a place in
// line (joining again keeps it), WatchQueue streams the position and the
// estimated wait, and its last update carries the admission token the event
// page then holds seats with. A dropped stream is watched again.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { admission, catalog, describe, isUnauthenticated, reasonOf, session, setAdmission, waitingRoom, when } from "../api";
import { h, link, navigate, sleep, statusLine } from "../dom";
import { WaitingRoomState, type QueueStatus } from "../gen/boxoffice/inventory/v1/inventory_pb";

function waitText(seconds: number): string {
  if (seconds < 5) return "any moment now";
  if (seconds < 90) return `about ${Math.round(seconds / 5) * 5} seconds`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `about ${minutes} minute${minutes === 1 ? "" : "s"}`;
  return `about ${Math.round(minutes / 60)} hours`;
}

export async function queuePage(root: HTMLElement, signal: AbortSignal, eventId: string): Promise<void> {
  document.title = "Waiting room · boxoffice";
  const eventPath = `/events/${eventId}`;
  if (!session()) return navigate(`/login?next=${encodeURIComponent(`${eventPath}/queue`)}`, { replace: true });
  if (admission(eventId)) return navigate(eventPath, { replace: true });

  const status = statusLine();
  const title = h("p", { class: "queue-event" });
  const position = h("p", { class: "position", id: "queue-position" }, "Joining the line…");
  const wait = h("p", { class: "wait", id: "queue-wait" });
  const place = h("p", { class: "hint" });
  const bar = h("progress", { id: "queue-progress", max: 100, value: 0, "aria-label": "Progress through the line" });
  root.append(
    h(
      "section",
      { class: "queue", "aria-labelledby": "queue-heading" },
      h("h1", { id: "queue-heading" }, "You're in the waiting room"),
      title,
      h("div", { class: "queue-live", role: "status", "aria-live": "polite", "aria-atomic": "true" }, position, wait),
      bar,
      place,
      h("p", { class: "hint" }, "Keep this page open: when it's your turn you go straight to the seats. Leaving and coming back keeps your place."),
      status.element,
      h("p", {}, link(eventPath, "← Back to the event")),
    ),
  );
  void catalog
    .getEvent({ id: eventId }, { signal })
    .then((event) => {
      title.textContent = `${event.title} — ${when(event.startTime, event.timeZone)}`;
      document.title = `Waiting room: ${event.title} · boxoffice`;
    })
    .catch(() => undefined);

  let first = 0n;
  const render = (update: QueueStatus) => {
    if (update.state === WaitingRoomState.WAITING) {
      const ahead = update.position;
      if (first === 0n || ahead > first) first = ahead;
      position.textContent = ahead <= 1n ? "You're next in line." : `Your place in line: ${ahead.toLocaleString()}`;
      const seconds = Number(update.estimatedWait?.seconds ?? 0n);
      wait.textContent = `Estimated wait: ${waitText(seconds)}.`;
      place.textContent = `You joined as number ${update.joinNumber.toLocaleString()}.`;
      bar.value = first > 0n ? Math.round(100 * (1 - Number(ahead - 1n) / Number(first))) : 0;
    }
  };

  try {
    const joined = await waitingRoom.joinQueue({ eventId }, { signal });
    render(joined);
  } catch (error) {
    if (signal.aborted) return;
    if (reasonOf(error) === "WAITING_ROOM_OFF") return navigate(eventPath, { replace: true });
    if (isUnauthenticated(error)) return navigate(`/login?next=${encodeURIComponent(`${eventPath}/queue`)}`, { replace: true });
    status.error(describe(error));
    return;
  }

  while (!signal.aborted) {
    try {
      for await (const update of waitingRoom.watchQueue({ eventId }, { signal })) {
        status.clear();
        if (update.state === WaitingRoomState.ADMITTED && update.admissionToken) {
          const expires = update.admissionExpireTime ? timestampDate(update.admissionExpireTime).getTime() : Date.now() + 60_000;
          setAdmission(eventId, update.admissionToken, expires);
          position.textContent = "It's your turn!";
          wait.textContent = "";
          bar.value = 100;
          navigate(eventPath, { replace: true });
          return;
        }
        if (update.state === WaitingRoomState.OFF) {
          navigate(eventPath, { replace: true });
          return;
        }
        render(update);
      }
    } catch (error) {
      if (signal.aborted) return;
      if (reasonOf(error) === "NOT_IN_QUEUE") {
        await waitingRoom.joinQueue({ eventId }, { signal }).catch(() => undefined);
      } else {
        status.error(`${describe(error)} Reconnecting…`);
      }
    }
    await sleep(1000, signal);
  }
}
