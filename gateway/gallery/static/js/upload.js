// Uploads: several files at once, each with its own progress and outcome. Small files go as one
// multipart POST; large ones resumably over tus (tus-js-client, vendored), so a broken
// connection costs at most the chunk in flight.

import { ApiError, collectionPath, credential, formatBytes } from "./api.js";

const TUS_SCRIPT = "/gallery/vendor/tus-js-client-4.3.1/tus.min.js";
// One PATCH per chunk, the size of the gateway's S3 parts (storage.s3.part_size, 8 MiB by
// default), so each chunk lands as one part with no tail object waiting for the next.
const TUS_CHUNK = 8 * 1024 * 1024;
// tus resumes chunk by chunk: a file of one chunk or less would be sent again whole after a cut,
// as a multipart upload is, yet pay for the creation request, the upload state the server
// records per PATCH and a second read of the object at completion (benchmarks/RESULTS.md: 1.45x
// the time of a multipart POST). So only files larger than a chunk go by tus.
const TUS_THRESHOLD = TUS_CHUNK;
const PARALLEL = 2;

// Loaded on the first large file only: most visits upload nothing, or only small files.
let tusLoaded = null;
function loadTus() {
  if (!tusLoaded) {
    tusLoaded = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = TUS_SCRIPT;
      script.onload = () => resolve(window.tus);
      script.onerror = () => reject(new Error("the resumable-upload library did not load"));
      document.head.append(script);
    });
  }
  return tusLoaded;
}

function explainRefusal(error) {
  if (error.status === 413) return `Refused: too large (${error.message})`;
  if (error.status === 415) return `Refused: not an image this gateway accepts (${error.message})`;
  if (error.status === 400) return `Refused: ${error.message}`;
  return error.explain();
}

function parseError(status, text) {
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // plain text answer
  }
  const err = body && body.error;
  return new ApiError(status, err ? err.code : `http_${status}`, err ? err.message : `HTTP ${status}`, body);
}

function multipart(item, url, properties) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("image", item.file, item.file.name);
    if (Object.keys(properties).length) form.append("json", JSON.stringify(properties));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(credential.headers())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => event.lengthComputable && item.progress(event.loaded / event.total);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(parseError(xhr.status, xhr.responseText));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "the connection failed"));
    item.abort = () => xhr.abort();
    xhr.send(form);
  });
}

async function resumable(item, collection, properties, dedupe) {
  const tus = await loadTus();
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(item.file, {
      endpoint: `${collectionPath(collection)}/tus`,
      chunkSize: TUS_CHUNK,
      retryDelays: [0, 1000, 3000, 5000],
      headers: credential.headers(),
      // `dedupe` rides in Upload-Metadata here (the multipart POST takes it as a query parameter).
      metadata: {
        filename: item.file.name,
        content_type: item.file.type || "application/octet-stream",
        properties: JSON.stringify(properties),
        ...(dedupe ? { dedupe: "true" } : {}),
      },
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => item.progress(sent / total),
      onError: (exc) => {
        const response = exc.originalResponse;
        reject(response ? parseError(response.getStatus(), response.getBody() || "") : new ApiError(0, "network", exc.message));
      },
      onSuccess: (payload) => {
        const body = payload && payload.lastResponse ? payload.lastResponse.getBody() : "";
        try {
          resolve(JSON.parse(body));
        } catch {
          resolve(null); // stored; the live feed or a reload shows it
        }
      },
    });
    item.abort = () => upload.abort();
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      upload.start();
    }, reject);
  });
}

export class Uploads {
  constructor(list, { maxBytes, onUploaded }) {
    this.list = list;
    this.maxBytes = maxBytes;
    this.onUploaded = onUploaded;
    this.items = [];
  }

  add(files) {
    for (const file of files) {
      const li = document.createElement("li");
      li.className = "upload-item";
      const name = document.createElement("span");
      name.className = "upload-name";
      name.textContent = `${file.name} (${formatBytes(file.size)})`;
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = 0;
      bar.setAttribute("aria-label", `Progress of ${file.name}`);
      const message = document.createElement("span");
      message.className = "upload-message";
      message.textContent = "Waiting";
      li.append(name, bar, message);
      this.list.append(li);
      const item = {
        file,
        li,
        state: "queued",
        progress: (fraction) => {
          bar.value = fraction;
          message.textContent = `${Math.round(fraction * 100)}%`;
        },
        say: (text, state) => {
          message.textContent = text;
          li.dataset.state = state;
        },
      };
      const maxBytes = this.maxBytes();
      if (maxBytes && file.size > maxBytes) {
        item.state = "refused";
        item.say(`Refused: too large (${formatBytes(file.size)}; this gateway accepts up to ${formatBytes(maxBytes)})`, "refused");
        bar.hidden = true;
      }
      this.items.push(item);
    }
  }

  pending() {
    return this.items.filter((item) => item.state === "queued").length;
  }

  clearFinished() {
    this.items = this.items.filter((item) => {
      if (item.state === "queued" || item.state === "sending") return true;
      item.li.remove();
      return false;
    });
  }

  async start(collection, properties, { dedupe = false } = {}) {
    const queue = this.items.filter((item) => item.state === "queued");
    const url = `${collectionPath(collection)}/images${dedupe ? "?dedupe=true" : ""}`;
    const worker = async () => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        item.state = "sending";
        item.say("Starting", "sending");
        const viaTus = item.file.size > TUS_THRESHOLD;
        item.li.dataset.via = viaTus ? "tus" : "multipart";
        try {
          const doc = viaTus ? await resumable(item, collection, properties, dedupe) : await multipart(item, url, properties);
          item.state = "done";
          if (doc && doc.duplicate) item.say(`Duplicate: the same image is already in “${collection}” as “${doc.image || doc.id}” — not stored again`, "duplicate");
          else item.say(viaTus ? "Uploaded (resumable)" : "Uploaded", "done");
          item.li.querySelector("progress").value = 1;
          if (doc) this.onUploaded(doc, collection);
        } catch (exc) {
          item.state = "refused";
          item.li.querySelector("progress").hidden = true;
          item.say(exc instanceof ApiError ? explainRefusal(exc) : `Failed: ${exc.message}`, "refused");
        }
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
  }
}
