// The drawing pad: pointer events, so a mouse, a pen and a finger all draw the same way.
// The service preprocesses white-on-black and black-on-white alike (it inverts a light border),
// so the ink choice is the user's taste only.

const THROTTLE_MS = 300;   // while drawing, predict at most this often; once more on pointerup

export class Pad {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.onChange = onChange;          // called with "drawing" (throttled) or "done"
    this.ink = "white";
    this.brush = 22;
    this.blank = true;
    this.last = null;
    this.lastNotice = 0;
    this.clear();
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.up(event));
    canvas.addEventListener("pointercancel", (event) => this.up(event));
  }

  get paper() {
    return this.ink === "white" ? "#000" : "#fff";
  }

  clear() {
    this.context.fillStyle = this.paper;
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.blank = true;
  }

  // Switching ink inverts what is there, so a half-drawn digit survives the switch.
  setInk(ink) {
    if (ink === this.ink) return;
    this.ink = ink;
    const {context, canvas} = this;
    context.save();
    context.globalCompositeOperation = "difference";
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.restore();
  }

  // An uploaded picture, fitted, so that drawing can go on over it. The bands beside a picture of
  // another shape take the colour of its edges, not the pad's paper (black bands beside a white
  // page would be strokes to the service), and the ink becomes the one that shows on it.
  show(bitmap) {
    this.clear();   // under a transparent picture: the paper, not the last drawing
    const {context, canvas} = this;
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const w = Math.max(1, Math.round(bitmap.width * scale));
    const h = Math.max(1, Math.round(bitmap.height * scale));
    const x = Math.floor((canvas.width - w) / 2), y = Math.floor((canvas.height - h) / 2);
    context.drawImage(bitmap, x, y, w, h);
    const [r, g, b] = edgeColour(context.getImageData(x, y, w, h));
    context.fillStyle = `rgb(${r} ${g} ${b})`;
    for (const [bx, by, bw, bh] of [[0, 0, canvas.width, y], [0, y + h, canvas.width, canvas.height - y - h],
                                    [0, y, x, h], [x + w, y, canvas.width - x - w, h]]) {
      if (bw > 0 && bh > 0) context.fillRect(bx, by, bw, bh);
    }
    this.ink = 0.299 * r + 0.587 * g + 0.114 * b > 127 ? "black" : "white";
    this.blank = false;
  }

  dataURL() {
    return this.canvas.toDataURL("image/png");
  }

  // The canvas is scaled by CSS on small screens; map client pixels to canvas pixels.
  point(event) {
    const rect = this.canvas.getBoundingClientRect();
    return {
      x: (event.clientX - rect.left) * (this.canvas.width / rect.width),
      y: (event.clientY - rect.top) * (this.canvas.height / rect.height),
    };
  }

  down(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    // Capture, so a stroke that leaves the canvas still ends with our pointerup.
    this.canvas.setPointerCapture(event.pointerId);
    this.last = this.point(event);
    this.stroke(this.last, this.last);
  }

  move(event) {
    if (this.last === null) return;
    // Coalesced events are the points the browser merged into this one: smoother fast strokes.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const sample of events.length ? events : [event]) {
      const next = this.point(sample);
      this.stroke(this.last, next);
      this.last = next;
    }
    const now = performance.now();
    if (now - this.lastNotice >= THROTTLE_MS) {
      this.lastNotice = now;
      this.onChange("drawing");
    }
  }

  up(event) {
    if (this.last === null) return;
    this.last = null;
    if (this.canvas.hasPointerCapture(event.pointerId)) {
      this.canvas.releasePointerCapture(event.pointerId);
    }
    this.onChange("done");
  }

  stroke(from, to) {
    const context = this.context;
    context.strokeStyle = this.ink === "white" ? "#fff" : "#000";
    context.lineWidth = this.brush;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
    this.blank = false;
  }
}

// The median of each channel over a picture's outermost pixels: its paper, even where a stroke
// runs off an edge.
function edgeColour({data, width, height}) {
  const offset = (x, y) => 4 * (y * width + x);
  const edge = [];
  for (let x = 0; x < width; x++) edge.push(offset(x, 0), offset(x, height - 1));
  for (let y = 1; y < height - 1; y++) edge.push(offset(0, y), offset(width - 1, y));
  return [0, 1, 2].map((c) => {
    const values = edge.map((at) => data[at + c]).sort((a, b) => a - b);
    return values[values.length >> 1];
  });
}
