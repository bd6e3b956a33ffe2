// Key/value rows with a type each (string, number, boolean, JSON): the detail panel's
// properties, the upload batch's and the bulk change's.

const TYPES = ["string", "number", "boolean", "json"];
const LABELS = { string: "Text", number: "Number", boolean: "Yes/no", json: "JSON" };

export function typeOf(value) {
  if (typeof value === "string") return "string";
  if (typeof value === "number") return "number";
  if (typeof value === "boolean") return "boolean";
  return "json";
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

// Parses one row's text as its type; throws an Error whose message names the problem.
export function parseTyped(type, text) {
  if (type === "string") return text;
  if (type === "number") {
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value)) throw new Error(`“${text}” is not a number`);
    return value;
  }
  if (type === "boolean") return text === "true";
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`“${text.slice(0, 40)}” is not valid JSON`);
  }
}

function display(type, value) {
  if (type === "string") return value;
  if (type === "boolean") return value ? "true" : "false";
  if (type === "number") return String(value);
  return JSON.stringify(value);
}

export class PropertyEditor {
  constructor(container, { label = "Property", onChange = () => {} } = {}) {
    this.container = container;
    this.label = label;
    this.onChange = onChange;
    this.rows = el("div", { className: "prop-rows" });
    const add = el("button", { type: "button", className: "secondary small", textContent: "Add property" });
    add.addEventListener("click", () => {
      const row = this.addRow("", "string", "");
      row.querySelector(".prop-key").focus();
      this.onChange();
    });
    container.replaceChildren(this.rows, add);
    this.counter = 0;
  }

  set(properties) {
    this.rows.replaceChildren();
    this.counter = 0;
    for (const [key, value] of Object.entries(properties || {})) this.addRow(key, typeOf(value), display(typeOf(value), value));
  }

  addRow(key, type, text) {
    this.counter += 1;
    const n = this.counter;
    const row = el("div", { className: "prop-row" });
    const keyInput = el("input", { className: "prop-key", type: "text", value: key, placeholder: "key", autocomplete: "off", spellcheck: false });
    keyInput.setAttribute("aria-label", `${this.label} ${n} key`);
    const typeSelect = el("select", { className: "prop-type" }, ...TYPES.map((t) => el("option", { value: t, textContent: LABELS[t], selected: t === type })));
    typeSelect.setAttribute("aria-label", `${this.label} ${n} type`);
    const slot = el("span", { className: "prop-value-slot" });
    const remove = el("button", { type: "button", className: "icon danger", textContent: "✕" });
    remove.setAttribute("aria-label", `Remove ${this.label.toLowerCase()} ${n}`);
    remove.addEventListener("click", () => {
      row.remove();
      this.onChange();
    });
    const valueControl = (t, current) => {
      let control;
      if (t === "boolean") {
        control = el("select", { className: "prop-value" }, el("option", { value: "true", textContent: "true" }), el("option", { value: "false", textContent: "false" }));
        control.value = current === "false" ? "false" : "true";
      } else if (t === "json") {
        control = el("textarea", { className: "prop-value", rows: 1, value: current, spellcheck: false });
      } else {
        control = el("input", { className: "prop-value", type: "text", value: current, inputMode: t === "number" ? "decimal" : "text", autocomplete: "off" });
      }
      control.setAttribute("aria-label", `${this.label} ${n} value`);
      control.addEventListener("input", () => this.onChange());
      slot.replaceChildren(control);
    };
    valueControl(type, text);
    typeSelect.addEventListener("change", () => {
      valueControl(typeSelect.value, slot.firstChild.value);
      this.onChange();
    });
    keyInput.addEventListener("input", () => this.onChange());
    row.append(keyInput, typeSelect, slot, remove);
    this.rows.append(row);
    return row;
  }

  // {key: value} of every row with a key; throws an Error naming the first bad row.
  values() {
    const result = {};
    for (const row of this.rows.children) {
      const key = row.querySelector(".prop-key").value.trim();
      const type = row.querySelector(".prop-type").value;
      const text = row.querySelector(".prop-value").value;
      if (!key) {
        if (text.trim()) throw new Error("A property has a value but no key");
        continue;
      }
      if (key.startsWith("$") || key.includes(".") || key.includes("\0")) throw new Error(`“${key}”: keys cannot start with $ or contain a dot`);
      if (key in result) throw new Error(`“${key}” is given twice`);
      try {
        result[key] = parseTyped(type, text);
      } catch (exc) {
        throw new Error(`${key}: ${exc.message}`);
      }
    }
    return result;
  }
}

// The JSON Merge Patch (RFC 7386) that turns `before` into `after`, or null when one cannot say
// it (a null inside an object would read as "delete"): then the caller replaces the whole set.
export function mergePatch(before, after) {
  const patch = {};
  let representable = true;
  const hasNull = (value) => value === null || (typeof value === "object" && !Array.isArray(value) && Object.values(value).some(hasNull));
  for (const key of Object.keys(before)) if (!(key in after)) patch[key] = null;
  for (const [key, value] of Object.entries(after)) {
    const old = before[key];
    if (JSON.stringify(old) === JSON.stringify(value)) continue;
    if (hasNull(value)) representable = false;
    const bothObjects = value && old && typeof value === "object" && typeof old === "object" && !Array.isArray(value) && !Array.isArray(old);
    if (bothObjects) {
      const inner = mergePatch(old, value);
      if (inner === null) representable = false;
      else patch[key] = inner;
    } else {
      patch[key] = value;
    }
  }
  return representable ? patch : null;
}
