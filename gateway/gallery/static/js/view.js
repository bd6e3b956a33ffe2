// The view's query as the API takes it, and the same filters applied to a document in the page.

export function filterDocument(filters) {
  const doc = {};
  for (const [key, op, value] of filters) {
    doc[key] = doc[key] && typeof doc[key] === "object" ? doc[key] : {};
    doc[key][op] = value;
  }
  return doc;
}

export function sortParam(sort) {
  if (sort === "time" || sort === "-time") return sort;
  const [, key, direction] = sort.match(/^prop:(.+):(-?1)$/) || [];
  return key ? JSON.stringify({ [key]: Number(direction) }) : "-time";
}

function lookup(doc, key) {
  if (key === "time") return doc.time;
  let value = doc.properties;
  for (const part of key.split(".")) {
    if (value === null || typeof value !== "object" || !(part in value)) return undefined;
    value = value[part];
  }
  return value;
}

// Whether a document (from the live feed) passes the view's filters, as the server would say.
export function matches(doc, filters) {
  return filters.every(([key, op, want]) => {
    const have = lookup(doc, key);
    switch (op) {
      case "$exists": return (have !== undefined) === want;
      case "$eq": return have === want;
      case "$ne": return have !== want;
      case "$gt": return have !== undefined && have > want;
      case "$gte": return have !== undefined && have >= want;
      case "$lt": return have !== undefined && have < want;
      case "$lte": return have !== undefined && have <= want;
      default: return true;
    }
  });
}

// The property keys of a document as /fields names them: nested ones dotted (`box`, `box.x`).
export function dottedKeys(properties, prefix = "") {
  return Object.entries(properties || {}).flatMap(([key, value]) => {
    const path = prefix + key;
    return value && typeof value === "object" && !Array.isArray(value) ? [path, ...dottedKeys(value, `${path}.`)] : [path];
  });
}

// The document a JSON Merge Patch (RFC 7386) makes of `target`.
export function applyMergePatch(target, patch) {
  const result = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else if (typeof value === "object" && !Array.isArray(value) && result[key] && typeof result[key] === "object") result[key] = applyMergePatch(result[key], value);
    else result[key] = value;
  }
  return result;
}
