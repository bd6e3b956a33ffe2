// Where a tile's or the preview's pixels come from: the rendition routes where the `thumb`
// preset is configured (documents carry `thumbnail_url`), else the original; with credentials, fetched with the
// header and drawn from a blob, since an <img> cannot send one.

import { credential } from "./api.js";

function withPreset(url, preset) {
  const target = new URL(url, location.href);
  target.searchParams.set("preset", preset);
  return target.href;
}

export function sources(doc) {
  if (doc.thumbnail_url) {
    return { thumb: doc.thumbnail_url, preview: withPreset(doc.thumbnail_url, "preview"), renditions: true };
  }
  return { thumb: doc.url, preview: doc.url, renditions: false };
}

const MAX_PARALLEL = 6;
const MAX_CACHED = 400;
const cache = new Map(); // url -> object URL, oldest first
const waiting = [];
let running = 0;

function remember(url, objectUrl) {
  cache.set(url, objectUrl);
  while (cache.size > MAX_CACHED) {
    const [oldest, blobUrl] = cache.entries().next().value;
    cache.delete(oldest);
    URL.revokeObjectURL(blobUrl);
  }
}

function pump() {
  while (running < MAX_PARALLEL && waiting.length) {
    const job = waiting.shift();
    if (job.signal.aborted) {
      job.reject(new DOMException("aborted", "AbortError"));
      continue;
    }
    running += 1;
    fetch(job.url, { headers: credential.headers(), signal: job.signal })
      .then(async (response) => {
        if (!response.ok) throw new Error(`${response.status}`);
        const objectUrl = URL.createObjectURL(await response.blob());
        remember(job.url, objectUrl);
        job.resolve(objectUrl);
      })
      .catch(job.reject)
      .finally(() => {
        running -= 1;
        pump();
      });
  }
}

function viaFetch(url, signal) {
  const hit = cache.get(url);
  if (hit) {
    cache.delete(url);
    cache.set(url, hit);
    return Promise.resolve(hit);
  }
  return new Promise((resolve, reject) => {
    waiting.push({ url, signal, resolve, reject });
    pump();
  });
}

export function needsFetch() {
  return !!credential.get();
}

// Points `img` at one document's thumbnail (srcset with the preview for dense screens). Answers
// `shown`, settled once the picture is drawn or failed, and `cancel`, for a tile being reused
// (it aborts a pending fetch and settles `shown`).
export function showThumb(img, doc) {
  const { thumb, preview, renditions } = sources(doc);
  img.classList.remove("loaded", "failed");
  let settle;
  const shown = new Promise((resolve) => (settle = resolve));
  const onLoad = () => {
    img.classList.add("loaded");
    // User Timing: how long until the first picture shows (read by the scale test).
    if (!performance.getEntriesByName("gallery:first-thumbnail").length) performance.mark("gallery:first-thumbnail");
    settle();
  };
  const onError = () => {
    img.classList.add("failed");
    settle();
  };
  img.onload = onLoad;
  img.onerror = onError;
  if (!needsFetch()) {
    img.srcset = renditions ? `${thumb} 1x, ${preview} 2x` : "";
    img.src = thumb;
    return { shown, cancel: settle };
  }
  img.removeAttribute("srcset");
  img.removeAttribute("src");
  const controller = new AbortController();
  const wanted = renditions && devicePixelRatio > 1.5 ? preview : thumb;
  viaFetch(wanted, controller.signal).then((objectUrl) => {
    if (!controller.signal.aborted) img.src = objectUrl;
  }, (exc) => {
    if (exc.name !== "AbortError") onError();
  });
  return {
    shown,
    cancel: () => {
      controller.abort();
      settle();
    },
  };
}

export async function showPreview(img, doc) {
  const { preview } = sources(doc);
  if (!needsFetch()) {
    img.src = preview;
    return;
  }
  img.src = await viaFetch(preview, new AbortController().signal);
}
