// Live changes of one collection: the events WebSocket, or, where the socket cannot be opened
// (a proxy that refuses upgrades), a poll of the newest page.

import { collectionPath, credential, json } from "./api.js";

// A WebSocket carries no headers from a browser: the credential travels as a subprotocol
// (base64url, never in the URL), beside the feed's own, which the server answers with.
const FEED_PROTOCOL = "image-gateway.v1";

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function protocols() {
  const saved = credential.get();
  if (!saved || !saved.value) return [FEED_PROTOCOL];
  const kind = saved.kind === "bearer" ? "bearer" : "apikey";
  return [FEED_PROTOCOL, `image-gateway.${kind}.${base64url(saved.value)}`];
}

const POLL_MS = 5000;

export class LiveFeed {
  // onEvent({event, id, document}) for each change; onMode("socket" | "polling") when it changes.
  constructor({ onEvent, onMode }) {
    this.onEvent = onEvent;
    this.onMode = onMode;
    this.socket = null;
    this.collection = null;
    this.retry = 0;
    this.timer = 0;
    this.polling = 0;
    this.known = null;
  }

  // `known(id)` says whether the page already shows an image, so polling reports only new ones.
  connect(collection, known) {
    this.known = known;
    if (this.collection === collection && (this.polling || (this.socket && this.socket.readyState <= 1))) return;
    this.disconnect();
    if (!collection) return;
    this.collection = collection;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${collectionPath(collection)}/events`, protocols());
    let subscribed = false;
    this.socket = socket;
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.event === "subscribed") {
        subscribed = true;
        this.retry = 0;
        this.onMode("socket");
      } else if (event.collection === this.collection) {
        this.onEvent(event);
      }
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (!subscribed && credential.get()) {
        this.poll(collection);
        return;
      }
      this.retry = Math.min(this.retry + 1, 6);
      this.timer = setTimeout(() => {
        this.collection = null;
        this.connect(collection, this.known);
      }, 500 * 2 ** this.retry);
    };
  }

  disconnect() {
    clearTimeout(this.timer);
    clearInterval(this.polling);
    this.polling = 0;
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close();
    }
    this.collection = null;
  }

  poll(collection) {
    this.onMode("polling");
    clearInterval(this.polling);
    this.polling = setInterval(async () => {
      if (collection !== this.collection || document.hidden) return;
      try {
        const { body } = await json(`${collectionPath(collection)}/images?${new URLSearchParams({ limit: "20", sort: "-time" })}`);
        for (const doc of body.reverse()) if (!this.known(doc.id)) this.onEvent({ event: "upload", id: doc.id, collection, document: doc });
      } catch {
        // the next round tries again
      }
    }, POLL_MS);
  }
}
