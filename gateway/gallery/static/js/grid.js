// A windowed grid: every loaded document is kept in memory, but only the rows in view (and a
// few either side) exist as elements, recycled as the page scrolls, so 10,000 images cost the
// DOM no more than 100 do. The focused tile is always kept, so focus is never lost to scrolling.

import { showThumb } from "./images.js";

const MIN_TILE = 150;
const GAP = 8;
const LABEL = 28;
const OVERSCAN_ROWS = 3;

export class VirtualGrid {
  constructor(scroller, { onOpen, onDelete, onNeedMore, onSelection }) {
    this.scroller = scroller;
    this.spacer = scroller.querySelector(".grid-spacer");
    this.items = [];
    this.index = new Map(); // id -> position
    this.total = null;
    this.selected = new Set();
    this.active = 0;
    this.anchor = null;
    this.selectMode = false;
    this.tiles = new Map(); // position -> element
    this.pool = [];
    this.hooks = { onOpen, onDelete, onNeedMore, onSelection };
    this.columns = 1;
    this.rowHeight = MIN_TILE + LABEL;
    this.frame = 0;
    scroller.addEventListener("scroll", () => this.schedule(), { passive: true });
    scroller.addEventListener("keydown", (event) => this.key(event));
    scroller.addEventListener("click", (event) => this.click(event));
    scroller.addEventListener("focusin", (event) => {
      const tile = event.target.closest(".tile");
      if (tile) this.active = Number(tile.dataset.position);
    });
    new ResizeObserver(() => this.layout()).observe(scroller);
  }

  setItems(items, total = null) {
    this.items = items.slice();
    this.total = total;
    this.selected.clear();
    this.active = 0;
    this.anchor = null;
    this.reindex();
    this.scroller.scrollTop = 0;
    this.refresh();
  }

  append(items) {
    for (const doc of items) {
      if (this.index.has(doc.id)) continue;
      this.index.set(doc.id, this.items.length);
      this.items.push(doc);
    }
    this.refresh();
  }

  prepend(doc) {
    if (this.index.has(doc.id)) return this.update(doc);
    this.items.unshift(doc);
    if (this.total !== null) this.total += 1;
    if (this.items.length > 1) this.active += 1;
    this.reindex();
    this.refresh(true);
  }

  update(doc) {
    const position = this.index.get(doc.id);
    if (position === undefined) return;
    this.items[position] = doc;
    const tile = this.tiles.get(position);
    // The same image with new properties: its label may change, its picture does not.
    if (tile) this.label(tile, doc);
  }

  remove(ids) {
    const gone = new Set(ids);
    const activeId = this.items[this.active] && this.items[this.active].id;
    const before = this.items.length;
    this.items = this.items.filter((doc) => !gone.has(doc.id));
    if (this.total !== null) this.total = Math.max(0, this.total - (before - this.items.length));
    for (const id of gone) this.selected.delete(id);
    this.reindex();
    this.active = Math.min(activeId && this.index.has(activeId) ? this.index.get(activeId) : this.active, Math.max(0, this.items.length - 1));
    this.refresh(true);
    this.hooks.onSelection(this.selected);
  }

  reindex() {
    this.index = new Map(this.items.map((doc, i) => [doc.id, i]));
  }

  get(id) {
    const position = this.index.get(id);
    return position === undefined ? null : this.items[position];
  }

  refresh(rebuild = false) {
    if (rebuild) {
      for (const [position, tile] of this.tiles) this.release(position, tile);
    }
    this.layout();
  }

  layout() {
    const width = this.scroller.clientWidth - 2 * GAP;
    this.columns = Math.max(1, Math.floor((width + GAP) / (MIN_TILE + GAP)));
    this.tileWidth = Math.floor((width - GAP * (this.columns - 1)) / this.columns);
    this.rowHeight = this.tileWidth + LABEL + GAP;
    const rows = Math.ceil(this.items.length / this.columns);
    this.spacer.style.height = `${rows * this.rowHeight + GAP}px`;
    this.render();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    // The scroll position is read once, before any tile is written: a read after a write
    // forces a style and layout pass, and one per tile made the longest tasks of a scroll.
    const top = this.scroller.scrollTop;
    const bottom = top + this.scroller.clientHeight;
    const start = Math.max(0, Math.floor(top / this.rowHeight) - OVERSCAN_ROWS) * this.columns;
    const end = Math.min(this.items.length, (Math.ceil(bottom / this.rowHeight) + OVERSCAN_ROWS) * this.columns);
    const keep = (position) => (position >= start && position < end) || position === this.active;
    for (const [position, tile] of this.tiles) {
      if (!keep(position) || position >= this.items.length) this.release(position, tile);
    }
    const wanted = [];
    for (let position = start; position < end; position += 1) wanted.push(position);
    if (this.active < this.items.length && !(this.active >= start && this.active < end)) wanted.push(this.active);
    for (const position of wanted) {
      let tile = this.tiles.get(position);
      if (!tile) {
        tile = this.pool.pop() || this.create();
        this.tiles.set(position, tile);
        this.fill(tile, position, top, bottom);
        if (!tile.isConnected) this.spacer.append(tile);
      } else {
        this.place(tile, position);
      }
    }
    for (const tile of this.pool) tile.hidden = true;
    if (end >= this.items.length - this.columns * 4) this.hooks.onNeedMore();
  }

  create() {
    const tile = document.createElement("div");
    tile.className = "tile";
    tile.setAttribute("role", "option");
    const frame = document.createElement("div");
    frame.className = "thumb";
    const img = document.createElement("img");
    img.alt = "";
    img.decoding = "async";
    img.loading = "lazy";
    img.draggable = false;
    frame.append(img);
    const name = document.createElement("span");
    name.className = "name";
    tile.append(frame, name);
    return tile;
  }

  place(tile, position) {
    const row = Math.floor(position / this.columns);
    const column = position % this.columns;
    tile.style.width = `${this.tileWidth}px`;
    tile.style.transform = `translate(${GAP + column * (this.tileWidth + GAP)}px, ${GAP + row * this.rowHeight}px)`;
    tile.dataset.position = String(position);
    tile.setAttribute("aria-posinset", String(position + 1));
    tile.setAttribute("aria-setsize", String(this.total !== null ? Math.max(this.total, this.items.length) : -1));
    tile.tabIndex = position === this.active ? 0 : -1;
    tile.setAttribute("aria-selected", this.selected.has(this.items[position].id) ? "true" : "false");
  }

  // A tile taken from the pool shows the document at `position`; `top` and `bottom` are the
  // scroller's view, so the rows in it fetch first and the overscan rows wait behind them.
  fill(tile, position, top, bottom) {
    const doc = this.items[position];
    this.place(tile, position);
    tile.hidden = false;
    if (tile.dataset.id === doc.id) return;
    tile.dataset.id = doc.id;
    tile.id = `tile-${doc.id}`;
    this.label(tile, doc);
    if (tile.cancel) tile.cancel();
    const img = tile.querySelector("img");
    img.fetchPriority = this.inView(position, top, bottom) ? "high" : "low";
    ({ shown: tile.shown, cancel: tile.cancel } = showThumb(img, doc));
  }

  inView(position, top, bottom) {
    const row = Math.floor(position / this.columns) * this.rowHeight;
    return row + this.rowHeight > top && row < bottom;
  }

  // Settles once every tile in view shows its picture (or failed to): the first screen is drawn.
  drawn() {
    const top = this.scroller.scrollTop;
    const bottom = top + this.scroller.clientHeight;
    return Promise.all([...this.tiles].filter(([position]) => this.inView(position, top, bottom)).map(([, tile]) => tile.shown));
  }

  label(tile, doc) {
    tile.querySelector(".name").textContent = doc.image || doc.id;
    tile.title = `${doc.image || doc.id} — ${doc.width}×${doc.height}`;
  }

  release(position, tile) {
    this.tiles.delete(position);
    if (tile === document.activeElement) this.scroller.focus({ preventScroll: true });
    if (tile.cancel) tile.cancel();
    tile.cancel = null;
    tile.shown = null;
    tile.hidden = true;
    tile.dataset.id = "";
    this.pool.push(tile);
  }

  activeDoc() {
    return this.items[this.active] || null;
  }

  domTiles() {
    return this.spacer.children.length;
  }

  focus(position, { select = false } = {}) {
    if (!this.items.length) return;
    this.active = Math.max(0, Math.min(this.items.length - 1, position));
    const row = Math.floor(this.active / this.columns);
    const top = row * this.rowHeight;
    if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (top + this.rowHeight > this.scroller.scrollTop + this.scroller.clientHeight) this.scroller.scrollTop = top + this.rowHeight - this.scroller.clientHeight + GAP;
    if (select) this.toggle(this.items[this.active].id);
    this.render();
    for (const [p, tile] of this.tiles) tile.tabIndex = p === this.active ? 0 : -1;
    const tile = this.tiles.get(this.active);
    if (tile) tile.focus({ preventScroll: true });
  }

  toggle(id, on = !this.selected.has(id)) {
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    this.paintSelection();
  }

  selectRange(from, to) {
    const [a, b] = from < to ? [from, to] : [to, from];
    for (let i = a; i <= b; i += 1) this.selected.add(this.items[i].id);
    this.paintSelection();
  }

  selectAll() {
    for (const doc of this.items) this.selected.add(doc.id);
    this.paintSelection();
  }

  clearSelection() {
    this.selected.clear();
    this.paintSelection();
  }

  paintSelection() {
    for (const [position, tile] of this.tiles) tile.setAttribute("aria-selected", this.selected.has(this.items[position].id) ? "true" : "false");
    this.hooks.onSelection(this.selected);
  }

  click(event) {
    const tile = event.target.closest(".tile");
    if (!tile) return;
    const position = Number(tile.dataset.position);
    const doc = this.items[position];
    if (event.shiftKey && this.anchor !== null) {
      this.selectRange(this.anchor, position);
    } else if (event.ctrlKey || event.metaKey || this.selectMode) {
      this.toggle(doc.id);
      this.anchor = position;
    } else {
      this.anchor = position;
      this.focus(position);
      this.hooks.onOpen(doc);
      return;
    }
    this.focus(position);
  }

  key(event) {
    if (!this.items.length || event.target.closest("input, select, textarea, button:not(.tile)")) return;
    const pageRows = Math.max(1, Math.floor(this.scroller.clientHeight / this.rowHeight));
    const moves = {
      ArrowRight: 1,
      ArrowLeft: -1,
      ArrowDown: this.columns,
      ArrowUp: -this.columns,
      PageDown: pageRows * this.columns,
      PageUp: -pageRows * this.columns,
    };
    if (event.key in moves) {
      event.preventDefault();
      const from = this.active;
      this.focus(this.active + moves[event.key]);
      if (event.shiftKey) this.selectRange(from, this.active);
      return;
    }
    const doc = this.activeDoc();
    switch (event.key) {
      case "Home":
        event.preventDefault();
        this.focus(0);
        break;
      case "End":
        event.preventDefault();
        this.focus(this.items.length - 1);
        break;
      case "Enter":
        event.preventDefault();
        if (doc) this.hooks.onOpen(doc);
        break;
      case " ":
        event.preventDefault();
        if (doc) this.toggle(doc.id);
        this.anchor = this.active;
        break;
      case "Delete":
      case "Backspace":
        event.preventDefault();
        this.hooks.onDelete(this.selected.size ? [...this.selected] : doc ? [doc.id] : []);
        break;
      case "Escape":
        if (this.selected.size) {
          event.preventDefault();
          this.clearSelection();
        }
        break;
      case "a":
        if (event.ctrlKey || event.metaKey) {
          event.preventDefault();
          this.selectAll();
        }
        break;
      default:
    }
  }
}
