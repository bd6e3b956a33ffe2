// The gallery page: collections, the grid, filters and sort in the URL, uploads, the detail
// panel, bulk changes, live updates and sign-in. Everything goes through the public API.

import {
  ApiError, authListeners, collectionPath, credential, enc, formatBytes, formatCount, imagePath, json, jsonBody, nextLink, request,
} from "./api.js";
import { VirtualGrid } from "./grid.js";
import { showPreview } from "./images.js";
import { LiveFeed } from "./live.js";
import { PropertyEditor, mergePatch } from "./props.js";
import { Uploads } from "./upload.js";
import { applyMergePatch, dottedKeys, filterDocument, matches, sortParam } from "./view.js";

const PAGE = 100;
// Ids in one `_id` `$in` filter: the API's bound on an id list, and what one write by filter
// touches at most (both 1000).
const IDS_PER_CALL = 1000;
const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  collection: null,
  sort: "-time",
  filters: [], // [key, op, value]
  next: null,
  loading: null,
  generation: 0,
  keys: [],
  collections: new Map(),
  detail: null, // {doc, etag, dirty}
};

// --- helpers ------------------------------------------------------------------------------

let toastTimer = 0;
function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove("shown"), 4000);
}

function notice(text, action = null) {
  const box = $("notice");
  box.replaceChildren();
  if (!text) {
    box.hidden = true;
    return;
  }
  const span = document.createElement("span");
  span.textContent = text;
  box.append(span);
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary small";
    button.textContent = action.label;
    button.addEventListener("click", action.run);
    box.append(button);
  }
  box.hidden = false;
}

function showError(id, error) {
  const box = $(id);
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = error instanceof ApiError ? error.explain() : error.message;
  box.hidden = false;
}

function confirmDialog(title, text, ok = "Delete") {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = ok;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-ok").removeEventListener("click", yes);
      $("confirm-cancel").removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const yes = (event) => { event.preventDefault(); done(true); };
    const no = (event) => { event.preventDefault(); done(false); };
    $("confirm-ok").addEventListener("click", yes);
    $("confirm-cancel").addEventListener("click", no);
    dialog.addEventListener("cancel", no);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// --- the URL is the view ------------------------------------------------------------------

function writeURL(push = false) {
  const params = new URLSearchParams();
  if (state.collection) params.set("collection", state.collection);
  if (state.sort !== "-time") params.set("sort", state.sort);
  if (state.filters.length) params.set("filter", JSON.stringify(state.filters));
  if (state.detail) params.set("image", state.detail.doc.id);
  const url = `${location.pathname}${params.toString() ? "?" + params : ""}`;
  if (url !== location.pathname + location.search) history[push ? "pushState" : "replaceState"](null, "", url);
}

function readURL() {
  const params = new URLSearchParams(location.search);
  state.collection = params.get("collection") || state.collection;
  state.sort = params.get("sort") || "-time";
  try {
    const filters = JSON.parse(params.get("filter") || "[]");
    state.filters = Array.isArray(filters) ? filters.filter((f) => Array.isArray(f) && f.length === 3 && typeof f[0] === "string") : [];
  } catch {
    state.filters = [];
  }
  return params.get("image");
}

// --- collections ----------------------------------------------------------------------------

// The names come first; counts and sizes follow in the background, so the grid need not wait.
async function loadCollections() {
  let names;
  try {
    ({ body: names } = await json("/collections"));
  } catch (exc) {
    if (exc instanceof ApiError && exc.status !== 401) notice(exc.explain());
    return [];
  }
  state.collections = new Map(names.map((name) => [name, { name }]));
  renderCollections();
  // The listing holds names only: counts and sizes from each collection's route, a few at a time.
  const missing = names.slice();
  const worker = async () => {
    for (let name = missing.shift(); name; name = missing.shift()) await refreshStats(name);
  };
  Promise.all([worker(), worker(), worker(), worker()]);
  return names;
}

async function refreshStats(name) {
  try {
    const { body } = await json(collectionPath(name));
    state.collections.set(name, { name, documents: body.documents, bytes: body.bytes });
  } catch {
    return;
  }
  renderCollections();
  if (name === state.collection) renderSummary();
}

let statsTimer = 0;
function refreshStatsSoon(name) {
  clearTimeout(statsTimer);
  statsTimer = setTimeout(() => (state.collections.has(name) ? refreshStats(name) : loadCollections()), 200);
}

function renderCollections() {
  const list = $("collections");
  list.replaceChildren();
  for (const entry of [...state.collections.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "collection";
    button.dataset.collection = entry.name;
    if (entry.name === state.collection) button.setAttribute("aria-current", "page");
    const name = document.createElement("span");
    name.className = "collection-name";
    name.textContent = entry.name;
    const meta = document.createElement("span");
    meta.className = "collection-meta";
    meta.textContent = entry.documents === undefined ? "…" : `${formatCount(entry.documents, "image")} · ${formatBytes(entry.bytes)}`;
    button.append(name, meta);
    button.addEventListener("click", () => {
      closeNav();
      selectCollection(entry.name);
    });
    li.append(button);
    list.append(li);
  }
  $("collections-empty").hidden = state.collections.size > 0;
}

function selectCollection(name) {
  if (name === state.collection) return;
  state.collection = name;
  state.filters = [];
  state.sort = "-time";
  writeURL(true);
  loadView();
}

// --- the view: listing pages ----------------------------------------------------------------

const grid = new VirtualGrid($("grid"), {
  onOpen: (doc) => openDetail(doc),
  onDelete: (ids) => deleteImages(ids),
  onNeedMore: () => loadMore(),
  onSelection: (selected) => renderSelection(selected),
});

function listingPath() {
  const params = new URLSearchParams({ limit: String(PAGE), sort: sortParam(state.sort) });
  if (state.filters.length) params.set("filter", JSON.stringify(filterDocument(state.filters)));
  return `${collectionPath(state.collection)}/images?${params}`;
}

function renderSummary() {
  const entry = state.collections.get(state.collection);
  const loaded = grid.items.length;
  let text;
  // The listing's own count (kept current by uploads and deletes seen here) beats the stats.
  const count = grid.total !== null ? grid.total : !state.filters.length && entry ? entry.documents : undefined;
  if (count !== undefined && !state.filters.length && entry && entry.bytes !== undefined) text = `${formatCount(count, "image")} · ${formatBytes(entry.bytes)}`;
  else if (count !== undefined) text = formatCount(count, "image");
  else text = `${formatCount(loaded, "image")}${state.next ? " shown, more below" : " match"}`;
  $("summary").textContent = text;
  $("empty").hidden = loaded > 0 || !!state.loading;
  $("empty").textContent = state.filters.length ? "No image matches these filters." : "No images here yet. Drop some on the page, or use Upload.";
}

function renderControls() {
  $("title").textContent = state.collection || "Gallery";
  document.title = `${state.collection ? state.collection + " · " : ""}Gallery · image-gateway`;
  $("sort").value = [...$("sort").options].some((o) => o.value === state.sort) ? state.sort : "-time";
  const chips = $("filters");
  chips.replaceChildren();
  const words = { $eq: "is", $ne: "is not", $gt: ">", $gte: "≥", $lt: "<", $lte: "≤", $exists: "is set" };
  state.filters.forEach(([key, op, value], i) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "chip";
    const text = op === "$exists" ? `${key} ${value ? "is set" : "is not set"}` : `${key} ${words[op] || op} ${JSON.stringify(value)}`;
    button.textContent = `${text} ✕`;
    button.setAttribute("aria-label", `Remove filter: ${text}`);
    button.addEventListener("click", () => {
      state.filters.splice(i, 1);
      writeURL(true);
      loadView();
    });
    li.append(button);
    chips.append(li);
  });
  renderCollections();
}

async function loadView(openId = null) {
  const generation = ++state.generation;
  state.next = null;
  state.loading = null;
  grid.setItems([]);
  renderControls();
  notice(null);
  if (!state.collection) {
    renderSummary();
    return;
  }
  $("loading").hidden = false;
  try {
    const { body, response } = await json(listingPath());
    if (generation !== state.generation) return;
    const total = response.headers.get("X-Total-Count");
    grid.setItems(body, total === null ? null : Number(total));
    state.next = nextLink(response);
  } catch (exc) {
    if (generation !== state.generation) return;
    notice(exc instanceof ApiError ? exc.explain() : exc.message);
  } finally {
    if (generation === state.generation) $("loading").hidden = true;
  }
  renderSummary();
  // The key list waits until the tiles in view have drawn: /fields scans up to 10,000 images,
  // and asked at once it doubled the time to the first thumbnail of a 10,000-image collection
  // (benchmarks/gallery.py). An empty listing without filters is a collection with no images
  // (or none yet, which /fields would answer 404): no keys until one arrives (see `learnKeys`).
  if (grid.items.length || state.filters.length) grid.drawn().then(() => generation === state.generation && loadKeys());
  else showKeys([]);
  connectLive();
  if (openId) {
    const doc = grid.get(openId) || (await json(imagePath(state.collection, openId)).then((r) => r.body, () => null));
    if (doc) openDetail(doc, { push: false });
  }
}

async function loadMore() {
  if (!state.next || state.loading) return;
  const generation = state.generation;
  const target = state.next;
  $("loading").hidden = false;
  state.loading = json(target)
    .then(({ body, response }) => {
      if (generation !== state.generation) return;
      state.next = nextLink(response);
      grid.append(body);
    })
    .catch((exc) => generation === state.generation && notice(exc instanceof ApiError ? exc.explain() : exc.message))
    .finally(() => {
      if (generation !== state.generation) return;
      state.loading = null;
      $("loading").hidden = true;
      renderSummary();
      // The grid asks again if the new page still leaves the end of the window in view.
      grid.render();
    });
}

// --- property keys and values for filters and sort ------------------------------------------

// The collection's keys (GET /fields) for the filter's suggestions and the sort's choices.
async function loadKeys() {
  const collection = state.collection;
  let keys = [];
  try {
    keys = (await json(`${collectionPath(collection)}/fields`)).body.fields.map((field) => field.key);
  } catch {
    // no suggestions: a key can still be typed
  }
  if (collection === state.collection) showKeys(keys);
}

function showKeys(keys) {
  state.keys = keys;
  $("filter-keys").replaceChildren(...keys.map((key) => Object.assign(document.createElement("option"), { value: key })));
  const sort = $("sort");
  for (const option of [...sort.options]) if (option.value.startsWith("prop:")) option.remove();
  for (const key of keys.slice(0, 20)) {
    sort.append(Object.assign(document.createElement("option"), { value: `prop:${key}:1`, textContent: `${key}, ascending` }));
    sort.append(Object.assign(document.createElement("option"), { value: `prop:${key}:-1`, textContent: `${key}, descending` }));
  }
  if (state.sort.startsWith("prop:") && ![...sort.options].some((o) => o.value === state.sort)) {
    const [, key, direction] = state.sort.match(/^prop:(.+):(-?1)$/) || [];
    if (key) sort.append(Object.assign(document.createElement("option"), { value: state.sort, textContent: `${key}, ${direction === "1" ? "ascending" : "descending"}` }));
  }
  sort.value = state.sort;
}

// Documents seen arriving or changing: ask /fields again only when one carries a key not yet
// known (each call scans up to 10,000 images on the server, so not on every live event).
let keysTimer = 0;
function learnKeys(docs) {
  if (!docs.some((doc) => dottedKeys(doc.properties).some((key) => !state.keys.includes(key)))) return;
  clearTimeout(keysTimer);
  keysTimer = setTimeout(loadKeys, 300);
}

async function valuesOf(key) {
  try {
    return (await json(`${collectionPath(state.collection)}/fields/${enc(key)}`)).body.values.map((v) => v.value);
  } catch {
    return []; // unknown key, or none yet: the typed text is taken as it reads
  }
}

// A typed value from the filter's text: the type the key's known values have, else JSON
// scalars (numbers, true/false) where the text is one, else the text.
async function typedValue(key, text) {
  const known = await valuesOf(key);
  const types = new Set(known.map((v) => typeof v));
  if (types.size === 1 && types.has("string")) return text;
  if (types.size === 1 && types.has("number") && text.trim() !== "" && Number.isFinite(Number(text))) return Number(text);
  if (types.size === 1 && types.has("boolean") && (text === "true" || text === "false")) return text === "true";
  try {
    const parsed = JSON.parse(text);
    if (parsed === null || ["number", "boolean"].includes(typeof parsed)) return parsed;
  } catch {
    // not JSON: a string
  }
  return text;
}

$("filter-key").addEventListener("change", async () => {
  const key = $("filter-key").value.trim();
  if (!key) return;
  const values = await valuesOf(key);
  $("filter-values").replaceChildren(...values.slice(0, 100).map((v) => Object.assign(document.createElement("option"), { value: typeof v === "string" ? v : JSON.stringify(v) })));
});

$("filter-toggle").addEventListener("click", () => {
  const open = document.body.classList.toggle("filters-open");
  $("filter-toggle").setAttribute("aria-expanded", String(open));
  if (open) $("filter-key").focus();
});

$("filter-op").addEventListener("change", () => {
  $("filter-value").disabled = $("filter-op").value === "$exists";
});

$("toolbar").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("filter-key").value.trim();
  const op = $("filter-op").value;
  if (!key) {
    $("filter-key").focus();
    return;
  }
  const value = op === "$exists" ? true : await typedValue(key, $("filter-value").value);
  state.filters.push([key, op, value]);
  $("filter-value").value = "";
  writeURL(true);
  loadView();
});

$("sort").addEventListener("change", () => {
  state.sort = $("sort").value;
  writeURL(true);
  loadView();
});

// --- selection and bulk changes -------------------------------------------------------------

function renderSelection(selected) {
  const n = selected.size;
  $("selection-count").textContent = n ? `${formatCount(n, "image")} selected` : "";
  for (const id of ["bulk-edit", "bulk-delete", "select-clear"]) $(id).hidden = n === 0;
}

$("select-mode").addEventListener("click", () => {
  grid.selectMode = !grid.selectMode;
  $("select-mode").setAttribute("aria-pressed", String(grid.selectMode));
  $("select-mode").textContent = grid.selectMode ? "Done selecting" : "Select";
  $("grid").classList.toggle("selecting", grid.selectMode);
});
$("select-clear").addEventListener("click", () => grid.clearSelection());
$("bulk-delete").addEventListener("click", () => deleteImages([...grid.selected]));

// Writes by filter: the ids as `_id` `$in` filters of at most IDS_PER_CALL each. An answer with
// `more` was cut at the server's per-call cap: a PATCH goes on `after` the last id it reached, a
// DELETE is called again (what it deleted matches no more). `done(ids)` hears of each finished
// list, so a failure part-way still shows what was done. Answers how many images it changed.
async function writeByIds(method, ids, patch, done) {
  const path = `${collectionPath(state.collection)}/images`;
  let changed = 0;
  for (let i = 0; i < ids.length; i += IDS_PER_CALL) {
    const part = ids.slice(i, i + IDS_PER_CALL);
    const params = new URLSearchParams({ filter: JSON.stringify({ _id: { $in: part } }) });
    for (let more = true; more; ) {
      const { body: answer } = await json(`${path}?${params}`, { method, ...(patch ? jsonBody(patch) : {}) });
      changed += method === "DELETE" ? answer.deleted : answer.updated + answer.unchanged;
      more = answer.more;
      if (answer.after) params.set("after", answer.after);
    }
    done(part);
  }
  return changed;
}

async function deleteImages(ids) {
  if (!ids.length) return false;
  const names = ids.map((id) => (grid.get(id) || { image: id }).image);
  const what = ids.length === 1 ? `“${names[0]}”` : `${ids.length} images`;
  if (!(await confirmDialog(`Delete ${what}?`, `This deletes ${what} and ${ids.length === 1 ? "its" : "their"} stored file${ids.length === 1 ? "" : "s"}. It cannot be undone.`))) return false;
  try {
    if (ids.length === 1) {
      await request(imagePath(state.collection, ids[0]), { method: "DELETE" });
      grid.remove(ids);
      toast(`Deleted ${what}`);
    } else {
      toast(`Deleted ${formatCount(await writeByIds("DELETE", ids, null, (part) => grid.remove(part)), "image")}`);
    }
  } catch (exc) {
    notice(exc instanceof ApiError ? exc.explain() : exc.message);
    return false;
  } finally {
    renderSummary();
    refreshStatsSoon(state.collection);
  }
  return true;
}

const bulkEditor = new PropertyEditor($("bulk-props"), { label: "Bulk property" });
$("bulk-cancel").addEventListener("click", () => $("bulk").close());
function openBulk() {
  bulkEditor.set({});
  bulkEditor.addRow("", "string", "");
  $("bulk-remove").value = "";
  showError("bulk-error", null);
  $("bulk-what").textContent = `Set or remove properties on ${formatCount(grid.selected.size, "selected image")}. Other properties are kept.`;
  $("bulk").showModal();
}
$("bulk-edit").addEventListener("click", openBulk);

$("bulk-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  let patch;
  try {
    patch = bulkEditor.values();
    for (const key of $("bulk-remove").value.split(",").map((k) => k.trim()).filter(Boolean)) patch[key] = null;
  } catch (exc) {
    showError("bulk-error", exc);
    return;
  }
  if (!Object.keys(patch).length) {
    showError("bulk-error", new Error("Nothing to change: add a property or a key to remove."));
    return;
  }
  const ids = [...grid.selected];
  $("bulk-apply").disabled = true;
  try {
    // The answer holds counts, not documents: the page applies the same merge patch itself
    // (each image's update event brings the stored document a moment later).
    await writeByIds("PATCH", ids, patch, (part) => {
      for (const doc of part.map((id) => grid.get(id)).filter(Boolean)) grid.update({ ...doc, properties: applyMergePatch(doc.properties || {}, patch) });
    });
    $("bulk").close();
    toast(`Updated ${formatCount(ids.length, "image")}`);
    learnKeys(ids.map((id) => grid.get(id)).filter(Boolean));
  } catch (exc) {
    showError("bulk-error", exc);
  } finally {
    $("bulk-apply").disabled = false;
  }
});

// --- the detail panel -----------------------------------------------------------------------

const detailEditor = new PropertyEditor($("detail-props"), { label: "Property", onChange: () => markDirty() });

function markDirty() {
  if (!state.detail) return;
  let dirty = true;
  try {
    dirty = JSON.stringify(detailEditor.values()) !== JSON.stringify(state.detail.doc.properties || {});
  } catch {
    dirty = true;
  }
  state.detail.dirty = dirty;
  $("detail-save").disabled = !dirty;
  $("detail-revert").disabled = !dirty;
}

function renderFields(doc) {
  const rows = [
    ["File name", doc.image], ["Id", doc.id], ["Collection", doc.collection], ["Uploaded", new Date(doc.time).toLocaleString()],
    ["Updated", doc.updated_at ? new Date(doc.updated_at).toLocaleString() : ""], ["Type", doc.content_type],
    ["Size", `${formatBytes(doc.size)} (${Number(doc.size).toLocaleString()} bytes)`], ["Dimensions", `${doc.width} × ${doc.height}`],
    ["SHA-256", doc.sha256], ["Owner", doc.owner],
  ];
  $("detail-fields").replaceChildren(...rows.filter(([, v]) => v).flatMap(([k, v]) => [
    Object.assign(document.createElement("dt"), { textContent: k }),
    Object.assign(document.createElement("dd"), { textContent: v }),
  ]));
}

function showDetail(doc, etag) {
  state.detail = { doc, etag, dirty: false };
  $("detail-title").textContent = doc.image || doc.id;
  $("detail-image").alt = `Preview of ${doc.image || doc.id}`;
  renderFields(doc);
  detailEditor.set(doc.properties || {});
  $("detail-conflict").hidden = true;
  showError("detail-error", null);
  markDirty();
}

async function openDetail(doc, { push = true } = {}) {
  const dialog = $("detail");
  $("detail-status").textContent = "";
  showDetail(doc, null);
  const img = $("detail-image");
  img.removeAttribute("src");
  if (!dialog.open) dialog.showModal();
  writeURL(push);
  showPreview(img, doc).catch(() => ($("detail-status").textContent = "The preview could not be loaded."));
  try {
    const { body, response } = await json(imagePath(doc.collection, doc.id));
    if (state.detail && state.detail.doc.id === doc.id && !state.detail.dirty) {
      showDetail(body, response.headers.get("ETag"));
      grid.update(body);
    } else if (state.detail && state.detail.doc.id === doc.id) {
      state.detail.etag = response.headers.get("ETag");
    }
  } catch (exc) {
    $("detail-status").textContent = exc instanceof ApiError ? exc.explain() : exc.message;
  }
}

function closeDetail() {
  state.detail = null;
  if ($("detail").open) $("detail").close();
  writeURL(true);
  const tile = document.querySelector(`.tile[data-position="${grid.active}"]`);
  if (tile) tile.focus();
}

async function leaveDetail() {
  if (state.detail && state.detail.dirty && !(await confirmDialog("Discard your changes?", "The properties you edited are not saved.", "Discard"))) return;
  closeDetail();
}

$("detail-close").addEventListener("click", leaveDetail);
$("detail").addEventListener("cancel", (event) => {
  event.preventDefault();
  leaveDetail();
});
$("detail").addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || !state.detail) return;
  if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
    if (state.detail.dirty) return;
    const position = grid.index.get(state.detail.doc.id);
    const next = grid.items[position + (event.key === "ArrowRight" ? 1 : -1)];
    if (next) {
      event.preventDefault();
      grid.focus(grid.index.get(next.id));
      openDetail(next, { push: false });
    }
  } else if (event.key === "Delete") {
    event.preventDefault();
    $("detail-delete").click();
  }
});
$("detail-revert").addEventListener("click", () => showDetail(state.detail.doc, state.detail.etag));

$("detail-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const detail = state.detail;
  let values;
  try {
    values = detailEditor.values();
  } catch (exc) {
    showError("detail-error", exc);
    return;
  }
  showError("detail-error", null);
  // An earlier save's "Saved." must not stand for this one while it is pending or refused.
  $("detail-status").textContent = "";
  const before = detail.doc.properties || {};
  const patch = mergePatch(before, values);
  const headers = detail.etag ? { "If-Match": detail.etag } : {};
  const path = imagePath(detail.doc.collection, detail.doc.id);
  $("detail-save").disabled = true;
  try {
    // A merge patch cannot say "set this nested value to null"; then the whole set is replaced.
    const options = patch === null ? { method: "PUT", ...jsonBody(values) } : { method: "PATCH", ...jsonBody(patch) };
    options.headers = { ...options.headers, ...headers };
    const { body, response } = await json(path, options);
    showDetail(body, response.headers.get("ETag"));
    grid.update(body);
    learnKeys([body]);
    $("detail-status").textContent = "Saved.";
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 412) await conflict(path, values);
    else showError("detail-error", exc);
    markDirty();
  }
});

// Someone else changed the image since it was opened: show their values, keep ours in the form.
async function conflict(path, mine) {
  const { body: current, response } = await json(path);
  const box = $("detail-conflict");
  box.replaceChildren();
  const p = document.createElement("p");
  p.textContent = "Someone else changed this image while you were editing. Its properties are now:";
  const pre = document.createElement("pre");
  pre.className = "their-values";
  pre.textContent = JSON.stringify(current.properties, null, 2);
  const useTheirs = Object.assign(document.createElement("button"), { type: "button", className: "secondary small", textContent: "Use their values" });
  const keepMine = Object.assign(document.createElement("button"), { type: "button", className: "small", textContent: "Save mine over theirs" });
  useTheirs.addEventListener("click", () => showDetail(current, response.headers.get("ETag")));
  keepMine.addEventListener("click", () => {
    state.detail.doc = current;
    state.detail.etag = response.headers.get("ETag");
    detailEditor.set(mine);
    box.hidden = true;
    $("detail-form").requestSubmit();
  });
  const actions = document.createElement("div");
  actions.className = "actions start";
  actions.append(useTheirs, keepMine);
  box.append(p, pre, actions);
  box.hidden = false;
  grid.update(current);
}

async function originalLink(doc) {
  if (!credential.get()) return doc.url;
  // With credentials the route needs the header: follow its redirect to the presigned link,
  // which works without one, and stop before the body.
  const controller = new AbortController();
  const response = await fetch(doc.url, { headers: credential.headers(), signal: controller.signal });
  if (!response.ok) throw new ApiError(response.status, "download", `the download answered ${response.status}`);
  controller.abort();
  return response.url;
}

$("detail-download").addEventListener("click", async () => {
  const doc = state.detail.doc;
  const a = document.createElement("a");
  a.download = doc.image || doc.id;
  try {
    if (credential.get()) {
      const response = await request(doc.url);
      a.href = URL.createObjectURL(await response.blob());
      setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
    } else {
      a.href = doc.url;
    }
    document.body.append(a);
    a.click();
    a.remove();
  } catch (exc) {
    $("detail-status").textContent = exc instanceof ApiError ? exc.explain() : exc.message;
  }
});

$("detail-copy").addEventListener("click", async () => {
  const doc = state.detail.doc;
  try {
    const link = await originalLink(doc);
    await navigator.clipboard.writeText(link);
    $("detail-status").textContent = credential.get() ? "Copied a signed download link (it expires; anyone holding it can download)." : "Copied the download link.";
  } catch (exc) {
    $("detail-status").textContent = `Could not copy the link: ${exc.message}`;
  }
});

$("detail-delete").addEventListener("click", async () => {
  const doc = state.detail.doc;
  if (await deleteImages([doc.id])) closeDetail();
});

// --- uploads --------------------------------------------------------------------------------

const batchEditor = new PropertyEditor($("batch-props"), { label: "Batch property" });
let uploads = null;

function uploadPanel() {
  if (!uploads) {
    uploads = new Uploads($("upload-list"), {
      // Read when files are added: the panel may open before `GET /` has answered.
      maxBytes: () => state.info && state.info.limits.max_upload_bytes,
      onUploaded: (doc, collection) => arrived(doc, collection),
    });
  }
  return uploads;
}

function openUpload() {
  const dialog = $("upload");
  if (!$("upload-collection").value) $("upload-collection").value = state.collection || (state.info && state.info.default_collection) || "";
  showError("upload-error", null);
  if (!dialog.open) dialog.showModal();
}

function queueFiles(files) {
  openUpload();
  uploadPanel().add([...files]);
  $("upload-start").disabled = uploadPanel().pending() === 0;
  $("upload-start").textContent = `Upload ${formatCount(uploadPanel().pending(), "file")}`;
}

$("upload-open").addEventListener("click", openUpload);
$("upload-close").addEventListener("click", () => $("upload").close());
$("upload-clear").addEventListener("click", () => uploadPanel().clearFinished());
$("file-input").addEventListener("change", () => {
  queueFiles($("file-input").files);
  $("file-input").value = "";
});

$("upload-start").addEventListener("click", async () => {
  const collection = $("upload-collection").value.trim();
  if (!$("upload-collection").checkValidity() || !collection) {
    showError("upload-error", new Error("Name a collection: letters, digits, and _ . - after the first character."));
    return;
  }
  let properties;
  try {
    properties = batchEditor.values();
  } catch (exc) {
    showError("upload-error", exc);
    return;
  }
  showError("upload-error", null);
  $("upload-start").disabled = true;
  $("upload-start").textContent = "Uploading…";
  await uploadPanel().start(collection, properties, { dedupe: $("dedupe").checked });
  $("upload-start").textContent = "Upload";
  $("upload-start").disabled = uploadPanel().pending() === 0;
  if (!state.collection) selectCollection(collection);
});

// A new document, from our upload or the live feed: into the grid where the view would show it.
function arrived(doc, collection = doc.collection) {
  // Shown already: our own upload coming back through the feed, or a duplicate answered with
  // the image it matches. Nothing changed, so no stats to ask for again.
  if (collection === state.collection && grid.get(doc.id)) return;
  if (!state.collections.has(collection)) {
    state.collections.set(collection, { name: collection });
    renderCollections();
  }
  refreshStatsSoon(collection);
  if (collection !== state.collection || !matches(doc, state.filters)) return;
  learnKeys([doc]);
  if (state.sort === "-time") grid.prepend(doc);
  else if (state.sort === "time" && !state.next) grid.append([doc]);
  else notice("New images arrived.", { label: "Show them", run: () => loadView() });
  renderSummary();
}

// Drag and drop anywhere on the page.
let dragDepth = 0;
const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
document.addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  dragDepth += 1;
  $("drop-overlay").hidden = false;
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) $("drop-overlay").hidden = true;
});
document.addEventListener("dragover", (event) => {
  if (hasFiles(event)) event.preventDefault();
});
document.addEventListener("drop", (event) => {
  if (!event.dataTransfer || !event.dataTransfer.files.length) return;
  event.preventDefault();
  dragDepth = 0;
  $("drop-overlay").hidden = true;
  queueFiles(event.dataTransfer.files);
});

// --- live updates ---------------------------------------------------------------------------

const live = new LiveFeed({
  onMode: (mode) => (document.body.dataset.live = mode),
  onEvent: (event) => {
    if (event.event === "upload") arrived(event.document);
    else if (event.event === "delete") removedElsewhere(event.id);
    else if (event.event === "update") updatedElsewhere(event.document);
  },
});

function connectLive() {
  live.connect(state.collection);
}

function removedElsewhere(id) {
  grid.remove([id]);
  renderSummary();
  refreshStatsSoon(state.collection);
  if (state.detail && state.detail.doc.id === id) {
    closeDetail();
    toast("That image was deleted elsewhere.");
  }
}

function updatedElsewhere(doc) {
  grid.update(doc);
  learnKeys([doc]);
  const open = state.detail;
  // Our own save comes back through the feed too; only someone else's change is news.
  if (!open || open.doc.id !== doc.id || open.doc.updated_at === doc.updated_at) return;
  if (open.dirty) {
    $("detail-status").textContent = "This image was just changed elsewhere; saving will show you their values first.";
    return;
  }
  // The feed's document has no ETag: ask for it, so a later save still pins the version.
  json(imagePath(doc.collection, doc.id)).then(({ body, response }) => {
    if (state.detail && state.detail.doc.id === doc.id && !state.detail.dirty) showDetail(body, response.headers.get("ETag"));
  }, () => {});
}

// --- sign-in --------------------------------------------------------------------------------

function renderWho() {
  const saved = credential.get();
  const auth = state.info && state.info.authentication;
  $("who").textContent = saved ? `Signed in with ${saved.kind === "bearer" ? "a bearer token" : "an API key"}` : auth ? "Not signed in" : "";
  $("sign-in-open").hidden = !auth || !!saved;
  $("sign-out").hidden = !saved;
}

function openSignIn(reason) {
  $("sign-in-reason").textContent = reason || "This gateway asks for credentials.";
  showError("sign-in-error", null);
  if (!$("sign-in").open) $("sign-in").showModal();
  $("sign-in-secret").focus();
}

$("sign-in-open").addEventListener("click", () => openSignIn());
$("sign-in-cancel").addEventListener("click", () => $("sign-in").close());
$("sign-out").addEventListener("click", () => {
  credential.clear();
  renderWho();
  live.disconnect();
  state.collections.clear();
  renderCollections();
  grid.setItems([]);
  if (state.info.authentication) openSignIn("Signed out.");
});

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const kind = new FormData($("sign-in-form")).get("kind");
  const secret = $("sign-in-secret").value.trim();
  if (!secret) return;
  credential.set(kind, secret);
  try {
    await request("/collections");
  } catch (exc) {
    if (exc.status === 401) credential.clear();
    showError("sign-in-error", exc);
    if (exc.status === 401) return;
  }
  $("sign-in-secret").value = "";
  $("sign-in").close();
  renderWho();
  live.disconnect();
  await start();
});

authListeners.add((error) => {
  if (error.status === 401) openSignIn(error.explain());
  else notice(error.explain());
});

// --- navigation on narrow screens -----------------------------------------------------------

function closeNav() {
  document.body.classList.remove("nav-open");
  $("nav-toggle").setAttribute("aria-expanded", "false");
}
$("nav-toggle").addEventListener("click", () => {
  const open = document.body.classList.toggle("nav-open");
  $("nav-toggle").setAttribute("aria-expanded", String(open));
  const current = document.querySelector(".collection[aria-current]") || document.querySelector(".collection");
  if (open && current) current.focus();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.body.classList.contains("nav-open")) {
    closeNav();
    $("nav-toggle").focus();
  }
});
$("main").addEventListener("click", () => document.body.classList.contains("nav-open") && closeNav());

window.addEventListener("popstate", () => {
  const openId = readURL();
  if (!openId && state.detail) closeDetail();
  loadView(openId);
});

// --- start ----------------------------------------------------------------------------------

async function start() {
  const openId = readURL();
  // A collection named in the URL is listed at once, beside the sidebar's requests.
  const view = state.collection ? loadView(openId) : null;
  const names = await loadCollections();
  if (view) return view;
  state.collection = names[0] || null;
  writeURL();
  return loadView(openId);
}

async function boot() {
  // The URL's collection is known at once: files dropped before `GET /` answers go there.
  readURL();
  try {
    ({ body: state.info } = await json("/"));
  } catch (exc) {
    notice(exc instanceof ApiError ? exc.explain() : exc.message);
    return;
  }
  renderWho();
  if (state.info.authentication && !credential.get()) {
    openSignIn("This gateway needs credentials: a bearer token or an API key.");
    renderControls();
    return;
  }
  await start();
}

// For tests and measurements: what the page has in the DOM and how it is connected.
window.gallery = { grid, state, live };
boot();
