// Live changes of one collection: the events WebSocket, reconnected with a growing delay when it
// closes (a restart, a network change).

import { collectionPath, credential } from "./api.js";

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

export class LiveFeed {
  // onEvent({event, id, document}) for each change; onMode("socket" | "closed") when it changes.
  constructor({ onEvent, onMode }) {
    this.onEvent = onEvent;
    this.onMode = onMode;
    this.socket = null;
    this.collection = null;
    this.retry = 0;
    this.timer = 0;
  }

  connect(collection) {
    if (this.collection === collection && this.socket && this.socket.readyState <= 1) return;
    this.disconnect();
    if (!collection) return;
    this.collection = collection;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${collectionPath(collection)}/events`, protocols());
    this.socket = socket;
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.event === "subscribed") {
        this.retry = 0;
        this.onMode("socket");
      } else if (event.collection === this.collection) {
        this.onEvent(event);
      }
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onMode("closed");
      this.retry = Math.min(this.retry + 1, 6);
      this.timer = setTimeout(() => {
        this.collection = null;
        this.connect(collection);
      }, 500 * 2 ** this.retry);
    };
  }

  disconnect() {
    clearTimeout(this.timer);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close();
    }
    this.collection = null;
  }
}
