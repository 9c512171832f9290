// The seat map as SVG: one circle per seat at the catalog's coordinates,
// coloured by price tier, greyed when held or sold, outlined when picked.
// Zoom with the wheel or the +/− buttons, pan by dragging. Availability is
// a byte per seat (0 available, 1 held, 2 sold), fed from WatchAvailability.
import type { SeatMap } from "./gen/boxoffice/catalog/v1/catalog_pb";
import { SectionKind } from "./gen/boxoffice/catalog/v1/catalog_pb";
import { h } from "./dom";

const SVG = "http://www.w3.org/2000/svg";
export const AVAILABLE = 0;
export const HELD = 1;
export const SOLD = 2;

export interface SeatInfo {
  index: number;
  section: string;
  sectionId: string;
  row: string;
  number: string;
  tierId: string;
}

/** "Lower 101 · Row A · Seat 5" for a seat index of a seat map. */
export function seatLabel(map: SeatMap | undefined, index: number): string {
  for (const section of map?.sections ?? []) {
    if (index < section.firstSeatIndex || index >= section.firstSeatIndex + section.capacity) continue;
    for (const row of section.rows) {
      const seat = row.seats.find((s) => s.seatIndex === index);
      if (seat) return `${section.name} · Row ${row.label} · Seat ${seat.number}`;
    }
    return section.name;
  }
  return `Seat ${index}`;
}

/** Half the closest spacing of neighbouring seats, so seats never overlap. */
function seatRadius(rows: SeatMap["sections"][number]["rows"]): number {
  let closest = Infinity;
  for (const row of rows) {
    for (let i = 1; i < row.seats.length; i++) {
      const a = row.seats[i - 1];
      const b = row.seats[i];
      closest = Math.min(closest, Math.hypot(a.x - b.x, a.y - b.y));
    }
  }
  return Number.isFinite(closest) ? Math.min(0.42, Math.max(0.04, closest * 0.45)) : 0.42;
}

function escapeAttribute(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] ?? c);
}

/** Seat i is bit (7 - i % 8) of byte i / 8. */
export function bit(bitmap: Uint8Array, index: number): boolean {
  const byte = bitmap[index >> 3] ?? 0;
  return (byte & (0x80 >> (index & 7))) !== 0;
}

export class SeatMapView {
  readonly element: HTMLElement;
  readonly seats = new Map<number, SeatInfo>();
  readonly state: Uint8Array;
  private readonly circles: (SVGCircleElement | undefined)[];
  private readonly svg: SVGSVGElement;
  private view: { x: number; y: number; w: number; h: number };
  private readonly home: { x: number; y: number; w: number; h: number };

  constructor(map: SeatMap, tierClass: (tierId: string) => string, onPick: (seat: SeatInfo) => void) {
    this.state = new Uint8Array(map.seatCount);
    this.circles = new Array(map.seatCount);
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("class", "seatmap");
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute(
      "aria-label",
      "Seat map: the stage and every seat, coloured by price and availability. Arrow keys move it, + and − zoom, 0 resets.",
    );
    this.svg.setAttribute("tabindex", "0");
    let minX = 0, minY = 0, maxX = 0, maxY = 0;
    // One markup string parsed once is several times faster than 16,752
    // createElementNS calls; only numbers and escaped names go into it.
    const markup: string[] = [];
    const order: number[] = [];
    for (const section of map.sections) {
      if (section.kind !== SectionKind.SEATED) continue;
      const tier = section.priceTierId ? tierClass(section.priceTierId) : "off-sale";
      markup.push(`<g class="section ${escapeAttribute(tier)}" data-section="${escapeAttribute(section.name)}">`);
      const radius = seatRadius(section.rows);
      for (const row of section.rows) {
        for (const seat of row.seats) {
          markup.push(`<circle cx="${seat.x}" cy="${seat.y}" r="${radius}" data-i="${seat.seatIndex}"/>`);
          order.push(seat.seatIndex);
          this.seats.set(seat.seatIndex, {
            index: seat.seatIndex,
            section: section.name,
            sectionId: section.id,
            row: row.label,
            number: seat.number,
            tierId: section.priceTierId,
          });
          minX = Math.min(minX, seat.x);
          minY = Math.min(minY, seat.y);
          maxX = Math.max(maxX, seat.x);
          maxY = Math.max(maxY, seat.y);
        }
      }
      markup.push("</g>");
    }
    markup.push(`<text x="0" y="0" class="stage" text-anchor="middle">STAGE</text>`);
    this.svg.innerHTML = markup.join("");
    const circles = this.svg.getElementsByTagName("circle");
    for (let i = 0; i < order.length; i++) this.circles[order[i]] = circles[i] as SVGCircleElement;
    const pad = 3;
    this.home = { x: minX - pad, y: minY - pad, w: maxX - minX + 2 * pad, h: maxY - minY + 2 * pad };
    this.view = { ...this.home };
    this.svg.style.aspectRatio = `${this.home.w} / ${this.home.h}`;
    this.apply();

    this.svg.addEventListener("click", (event) => {
      const target = event.target as SVGElement;
      const index = target.dataset?.i;
      if (index === undefined || this.dragged) return;
      const seat = this.seats.get(Number(index));
      if (seat) onPick(seat);
    });
    this.enablePanZoom();
    this.svg.addEventListener("keydown", (event) => {
      const step = 0.15;
      const moves: Record<string, [number, number]> = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
      const move = moves[event.key];
      const centre = () => [this.view.x + this.view.w / 2, this.view.y + this.view.h / 2] as const;
      if (move) {
        this.view = { ...this.view, x: this.view.x + move[0] * this.view.w, y: this.view.y + move[1] * this.view.h };
        this.apply();
      } else if (event.key === "+" || event.key === "=") this.zoom(0.7, ...centre());
      else if (event.key === "-" || event.key === "_") this.zoom(1 / 0.7, ...centre());
      else if (event.key === "0") {
        this.view = { ...this.home };
        this.apply();
      } else return;
      event.preventDefault();
    });

    const zoom = (factor: number) => () => this.zoom(factor, this.view.x + this.view.w / 2, this.view.y + this.view.h / 2);
    this.element = h(
      "div",
      { class: "seatmap-frame" },
      h(
        "div",
        { class: "zoom", role: "group", "aria-label": "Zoom" },
        h("button", { type: "button", onclick: zoom(0.7), "aria-label": "Zoom in" }, "+"),
        h("button", { type: "button", onclick: zoom(1 / 0.7), "aria-label": "Zoom out" }, "−"),
        h("button", { type: "button", onclick: () => { this.view = { ...this.home }; this.apply(); } }, "Reset"),
      ),
    );
    this.element.prepend(this.svg);
  }

  set(index: number, value: number): void {
    if (index >= this.state.length) return;
    this.state[index] = value;
    const circle = this.circles[index];
    if (!circle) return;
    circle.classList.toggle("held", value === HELD);
    circle.classList.toggle("sold", value === SOLD);
  }

  setAll(sold: Uint8Array, held: Uint8Array): void {
    for (let i = 0; i < this.state.length; i++) {
      this.set(i, bit(sold, i) ? SOLD : bit(held, i) ? HELD : AVAILABLE);
    }
  }

  setPicked(index: number, picked: boolean): void {
    this.circles[index]?.classList.toggle("picked", picked);
  }

  private apply(): void {
    const { x, y, w, h: height } = this.view;
    this.svg.setAttribute("viewBox", `${x} ${y} ${w} ${height}`);
  }

  private zoom(factor: number, cx: number, cy: number): void {
    const w = Math.min(this.home.w * 2, Math.max(8, this.view.w * factor));
    const scale = w / this.view.w;
    this.view = {
      x: cx - (cx - this.view.x) * scale,
      y: cy - (cy - this.view.y) * scale,
      w,
      h: this.view.h * scale,
    };
    this.apply();
  }

  private dragged = false;

  private enablePanZoom(): void {
    this.svg.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        const point = this.toMap(event.clientX, event.clientY);
        this.zoom(event.deltaY > 0 ? 1.15 : 1 / 1.15, point.x, point.y);
      },
      { passive: false },
    );
    // A drag moves the drawn map as one composited layer (a CSS transform,
    // at most once a frame) and sets the new viewBox only when it ends: the
    // 16,752 circles are not laid out again for every pointer move. The SVG
    // draws what lies beyond its viewBox too (the frame clips it), so the
    // parts pulled into view are there.
    let start: { x: number; y: number; vx: number; vy: number; perPixel: number } | null = null;
    let offset = { dx: 0, dy: 0 };
    let frame = 0;
    this.svg.addEventListener("pointerdown", (event) => {
      const rect = this.svg.getBoundingClientRect();
      const perPixel = Math.max(this.view.w / rect.width, this.view.h / rect.height);
      start = { x: event.clientX, y: event.clientY, vx: this.view.x, vy: this.view.y, perPixel };
      this.dragged = false;
    });
    this.svg.addEventListener("pointermove", (event) => {
      if (!start) return;
      const dx = event.clientX - start.x;
      const dy = event.clientY - start.y;
      if (!this.dragged && Math.hypot(dx, dy) < 4) return;
      if (!this.dragged) {
        this.svg.setPointerCapture(event.pointerId);
        this.svg.classList.add("panning");
      }
      this.dragged = true;
      offset = { dx, dy };
      if (!frame) {
        frame = requestAnimationFrame(() => {
          frame = 0;
          this.svg.style.transform = `translate(${offset.dx}px, ${offset.dy}px)`;
        });
      }
    });
    const end = () => {
      if (start && this.dragged) {
        cancelAnimationFrame(frame);
        frame = 0;
        this.view = { ...this.view, x: start.vx - offset.dx * start.perPixel, y: start.vy - offset.dy * start.perPixel };
        this.svg.style.transform = "";
        this.svg.classList.remove("panning");
        this.apply();
      }
      start = null;
      // Let the click that ends a drag see `dragged`, then reset.
      window.setTimeout(() => (this.dragged = false), 0);
    };
    this.svg.addEventListener("pointerup", end);
    this.svg.addEventListener("pointercancel", end);
  }

  private toMap(clientX: number, clientY: number): { x: number; y: number } {
    const matrix = this.svg.getScreenCTM();
    if (!matrix) return { x: this.view.x + this.view.w / 2, y: this.view.y + this.view.h / 2 };
    const point = new DOMPoint(clientX, clientY).matrixTransform(matrix.inverse());
    return { x: point.x, y: point.y };
  }
}
