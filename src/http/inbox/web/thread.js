// The open conversation: its messages (older ones load on scroll up), kept current by the live
// feed, and the composer that replies in it.

import { ApiError, SignedOut, get, post, query } from "./api.js";
import { $, clockTime, codePoints, h, link, linkified, platformMark, platformName, safeUrl, timeElement } from "./dom.js";

const PAGE = 50;
/** Load older messages when the top is this close (px). */
const NEAR_TOP = 300;

/** The outbound life cycle, in order; a status never moves back (`failed` ends it). */
const RANK = { received: 0, queued: 1, sending: 2, sent: 3, delivered: 4, read: 5, failed: 6 };
const TICKS = {
  queued: { glyph: "\u25F7", label: "Queued" },
  sending: { glyph: "\u25F7", label: "Sending" },
  sent: { glyph: "\u2713", label: "Sent" },
  delivered: { glyph: "\u2713\u2713", label: "Delivered" },
  read: { glyph: "\u2713\u2713", label: "Read" },
  failed: { glyph: "!", label: "Failed" },
};

/** What the platform lets us send now (`window.outside`, or null when free text may go). */
export function outsideNow(conversation, now = Date.now()) {
  const window = conversation?.window;
  if (!window) return null;
  if (window.outside) return window.outside;
  if (window.open_until && Date.parse(window.open_until) <= now) {
    return conversation.platform === "whatsapp" ? "template_only" : "human_agent";
  }
  return null;
}

export class Thread {
  /** `channels()` gives the channels by platform; `markRead(id)`; `onNewInbound(message)`. */
  constructor({ channels, markRead }) {
    this.channels = channels;
    this.markRead = markRead;
    this.conversation = null;
    this.messages = new Map(); // id -> { message, item }
    this.byPlatformId = new Map(); // platform_message_id -> message
    this.next = null;
    this.loading = false;
    this.generation = 0;
    this.quote = null;
    this.localIds = 0;

    this.title = $("thread-title");
    this.mark = $("thread-mark");
    this.empty = $("thread-empty");
    this.scroller = $("thread-scroll");
    this.list = $("messages");
    this.status = $("thread-status");
    this.composer = $("composer");
    this.text = $("reply-text");
    this.counter = $("counter");
    this.sendButton = $("send");
    this.sendError = $("send-error");
    this.windowNote = $("window-note");
    this.template = $("template");
    this.freeText = $("free-text");

    this.scroller.addEventListener("scroll", () => this.maybeLoadOlder(), { passive: true });
    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.text.addEventListener("input", () => this.updateCounter());
    $("quote-cancel").addEventListener("click", () => this.setQuote(null));
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-quote]");
      if (!button) return;
      const entry = this.messages.get(button.dataset.quote);
      if (entry) this.setQuote(entry.message);
    });
    setInterval(() => this.updateComposer(), 30_000);
  }

  get openId() {
    return this.conversation?.id ?? null;
  }

  /** Shows `conversation`, loading its newest messages. */
  async open(conversation, { focus = false } = {}) {
    const same = this.conversation?.id === conversation.id;
    this.generation += 1;
    this.conversation = conversation;
    this.messages.clear();
    this.byPlatformId.clear();
    this.list.replaceChildren();
    this.next = null;
    if (!same) {
      this.text.value = "";
      this.setQuote(null);
      this.sendError.textContent = "";
    }
    this.showHeader();
    this.empty.hidden = true;
    this.scroller.hidden = false;
    this.composer.hidden = false;
    this.updateComposer();
    if (focus) this.text.focus();
    this.markRead(conversation.id);
    await this.loadOlder(true);
  }

  close() {
    this.generation += 1;
    this.conversation = null;
    this.messages.clear();
    this.byPlatformId.clear();
    this.list.replaceChildren();
    this.scroller.hidden = true;
    this.composer.hidden = true;
    this.empty.hidden = false;
    this.title.textContent = "No conversation open";
    this.mark.replaceChildren();
  }

  showHeader() {
    const conversation = this.conversation;
    const name = conversation.contact_name || conversation.contact_id || "Unknown contact";
    this.title.textContent = name;
    this.title.title = `${name} (${conversation.contact_id}) on ${platformName(conversation.platform)}`;
    this.mark.replaceChildren(platformMark(conversation.platform));
  }

  /** The open conversation changed (name, window, unread). */
  updateConversation(conversation) {
    if (conversation.id !== this.openId) return;
    this.conversation = conversation;
    this.showHeader();
    this.updateComposer();
  }

  async loadOlder(first = false) {
    const generation = this.generation;
    const id = this.openId;
    if (!id || this.loading) return;
    this.loading = true;
    // Pages are not news: screen readers announce only messages that arrive live.
    this.list.setAttribute("aria-busy", "true");
    this.status.textContent = "Loading messages…";
    let page;
    try {
      page = await get(`/api/conversations/${encodeURIComponent(id)}/messages${query({ limit: PAGE, before: first ? null : this.next })}`);
    } catch (error) {
      if (generation === this.generation) {
        this.loading = false;
        this.list.removeAttribute("aria-busy");
        this.status.textContent = error instanceof ApiError ? error.message : "Messages could not be loaded.";
      }
      return;
    }
    if (generation !== this.generation) return;
    this.loading = false;
    this.list.removeAttribute("aria-busy");
    const older = (page.messages || []).slice().reverse(); // the API pages newest first
    const height = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    const fragment = document.createDocumentFragment();
    for (const message of older) {
      if (this.messages.has(message.id)) continue; // the feed brought it already
      this.remember(message);
      const item = this.render(message);
      this.messages.set(message.id, { message, item });
      fragment.append(item);
    }
    this.list.prepend(fragment);
    this.next = page.next ?? null;
    this.status.textContent = this.next === null ? (this.messages.size ? "The conversation begins here." : "No messages yet.") : "";
    if (first) this.scrollToEnd();
    else this.scroller.scrollTop = top + (this.scroller.scrollHeight - height);
    this.refreshQuotes();
    requestAnimationFrame(() => this.maybeLoadOlder());
  }

  maybeLoadOlder() {
    if (!this.loading && this.next !== null && this.scroller.scrollTop < NEAR_TOP) this.loadOlder();
  }

  nearEnd() {
    const { scrollTop, scrollHeight, clientHeight } = this.scroller;
    return scrollHeight - scrollTop - clientHeight < 120;
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  remember(message) {
    if (message.platform_message_id) this.byPlatformId.set(message.platform_message_id, message);
  }

  /** A message from the feed (new, or its status or text moved). Returns true if it is new here. */
  upsert(message) {
    if (message.conversation_id !== this.openId) return false;
    const existing = this.messages.get(message.id);
    if (existing) {
      const kept = existing.message;
      // Events and pages may arrive out of order: a status never moves back.
      const merged = (RANK[message.status] ?? 0) < (RANK[kept.status] ?? 0) ? { ...message, status: kept.status, error: kept.error } : message;
      const item = this.render(merged);
      existing.item.replaceWith(item);
      this.messages.set(message.id, { message: merged, item });
      this.remember(merged);
      return false;
    }
    const stick = this.nearEnd();
    this.remember(message);
    const item = this.render(message);
    this.messages.set(message.id, { message, item });
    this.insertInOrder(item, message);
    this.refreshQuotes();
    if (stick || message.direction === "outbound") this.scrollToEnd();
    return true;
  }

  insertInOrder(item, message) {
    const at = Date.parse(message.sent_at) || 0;
    let after = this.list.lastElementChild;
    while (after) {
      const other = this.messages.get(after.dataset.id)?.message;
      if (!other || (Date.parse(other.sent_at) || 0) <= at) break;
      after = after.previousElementSibling;
    }
    if (after) after.after(item);
    else this.list.prepend(item);
  }

  /** Quotes whose message was not loaded when they were drawn. */
  refreshQuotes() {
    for (const quote of this.list.querySelectorAll(".quote[data-unresolved]")) {
      const target = this.byPlatformId.get(quote.dataset.replyTo);
      if (target) quote.replaceWith(this.renderQuote(target.platform_message_id));
    }
  }

  renderQuote(replyTo) {
    const target = this.byPlatformId.get(replyTo);
    if (!target) {
      return h("div", { class: "quote", "data-unresolved": "", "data-reply-to": replyTo }, "\u21AA Reply to an earlier message");
    }
    const who = target.direction === "outbound" ? "You" : this.conversation?.contact_name || "Contact";
    return h("div", { class: "quote" }, h("span", { class: "quote-who" }, `\u21AA ${who}: `), summary(target));
  }

  render(message) {
    const outbound = message.direction === "outbound";
    const local = message.id.startsWith("local-");
    const item = h("li", {
      class: `message ${outbound ? "outbound" : "inbound"}${local ? " pending" : ""}`,
      "data-id": message.id,
      "data-status": message.status,
    });
    const bubble = h("div", { class: "bubble" });
    const who = outbound ? "You" : this.conversation?.contact_name || this.conversation?.contact_id || "Contact";
    bubble.append(h("span", { class: "sr-only" }, `${who}: `));
    if (message.reply_to && message.kind !== "reaction") bubble.append(this.renderQuote(message.reply_to));
    bubble.append(...content(message));
    const meta = h("div", { class: "meta" }, timeElement(message.sent_at, clockTime(message.sent_at), "at"));
    if (message.previous?.length && !message.revoked_at) meta.append(h("span", { class: "edited" }, " edited"));
    if (outbound && TICKS[message.status]) {
      const ticks = TICKS[message.status];
      meta.append(h("span", { class: `ticks ticks-${message.status}`, role: "img", "aria-label": ticks.label, title: ticks.label }, ticks.glyph));
    }
    if (message.platform_message_id && !local) {
      meta.append(h("button", { type: "button", class: "quiet quote-button", "data-quote": message.id, "aria-label": "Quote this message" }, "Reply"));
    }
    bubble.append(meta);
    if (message.status === "failed") {
      const reason = message.error?.message || "The platform did not take it.";
      bubble.append(h("p", { class: "failure", role: "note" }, `Not delivered: ${reason}`));
    }
    item.append(bubble);
    return item;
  }

  setQuote(message) {
    this.quote = message && message.platform_message_id ? message : null;
    const note = $("quote-note");
    note.hidden = !this.quote;
    $("quote-text").textContent = this.quote ? `Replying to: ${previewText(this.quote)}` : "";
    if (this.quote) this.text.focus();
  }

  /** The composer as the platform's window allows now: free text, a template, or nothing. */
  updateComposer() {
    const conversation = this.conversation;
    if (!conversation) return;
    const outside = outsideNow(conversation);
    this.mode = outside || "free";
    const note = {
      template_only: "Outside WhatsApp's 24-hour window: only an approved template can be sent until the customer writes again.",
      human_agent: "Outside Messenger's 24-hour window: this reply goes as a person's (human agent), allowed up to 7 days after their last message.",
      closed: "Messenger allows no message now: the customer last wrote more than 7 days ago.",
    }[outside];
    this.windowNote.hidden = !note;
    this.windowNote.textContent = note || "";
    this.template.hidden = outside !== "template_only";
    this.freeText.hidden = outside === "template_only";
    this.text.disabled = outside === "closed";
    this.updateCounter();
  }

  limit() {
    return this.channels()[this.conversation?.platform]?.max_text_chars ?? null;
  }

  updateCounter() {
    if (!this.conversation) return;
    const max = this.limit();
    const used = codePoints(this.text.value);
    const over = max !== null && used > max;
    this.counter.hidden = this.mode === "template_only";
    this.counter.textContent = max === null ? `${used}` : over ? `${used} / ${max}: ${used - max} over the limit` : `${used} / ${max}`;
    this.counter.classList.toggle("over", over);
    this.sendButton.disabled = over || this.mode === "closed";
  }

  /** The reply the composer holds, as the API takes it; null when there is nothing to send. */
  draft() {
    const body = {};
    if (this.mode === "template_only") {
      const name = $("template-name").value.trim();
      if (!name) return null;
      const parameters = $("template-parameters").value.split("\n").map((p) => p.trim()).filter(Boolean);
      body.template = {
        name,
        language: $("template-language").value.trim() || "en_US",
        components: parameters.length ? [{ type: "body", parameters: parameters.map((text) => ({ type: "text", text })) }] : [],
      };
    } else {
      const text = this.text.value;
      const url = $("attach-url").value.trim();
      if (text.trim()) body.text = text;
      if (url) body.attachments = [{ kind: $("attach-kind").value, url }];
      if (!body.text && !body.attachments) return null;
      if (this.mode === "human_agent") body.human_agent = true;
    }
    if (this.quote) body.reply_to = this.quote.platform_message_id;
    return body;
  }

  async send() {
    const conversation = this.conversation;
    if (!conversation || this.sendButton.disabled) return;
    const body = this.draft();
    if (!body) return;
    this.sendError.textContent = "";
    const local = {
      id: `local-${(this.localIds += 1)}`,
      conversation_id: conversation.id,
      platform: conversation.platform,
      direction: "outbound",
      platform_message_id: null,
      text: body.text ?? (body.template ? `Template ${body.template.name}` : null),
      attachments: (body.attachments || []).map((a) => ({ kind: a.kind, url: a.url, mime_type: null, name: null })),
      sent_at: new Date().toISOString(),
      status: "queued",
      error: null,
      kind: body.template ? "template" : "text",
      reply_to: body.reply_to ?? null,
    };
    const typed = { text: this.text.value, url: $("attach-url").value };
    this.text.value = "";
    $("attach-url").value = "";
    this.setQuote(null);
    this.updateCounter();
    this.upsert(local);
    let answer;
    try {
      answer = await post(`/api/conversations/${encodeURIComponent(conversation.id)}/messages`, body);
    } catch (error) {
      this.forget(local.id);
      if (error instanceof SignedOut) return;
      if (this.openId === conversation.id) {
        if (!this.text.value) this.text.value = typed.text;
        if (!$("attach-url").value) $("attach-url").value = typed.url;
        this.updateCounter();
        this.sendError.textContent = `Not sent: ${error.message}`;
      }
      return;
    }
    const message = answer?.message;
    if (!message || this.openId !== conversation.id) return;
    const entry = this.messages.get(local.id);
    if (this.messages.has(message.id) || !entry) {
      this.forget(local.id); // the feed showed it first
      return;
    }
    const item = this.render(message);
    entry.item.replaceWith(item);
    this.messages.delete(local.id);
    this.messages.set(message.id, { message, item });
    this.remember(message);
  }

  forget(id) {
    const entry = this.messages.get(id);
    if (!entry) return;
    entry.item.remove();
    this.messages.delete(id);
  }
}

/** A message's words for a quote or the quote note. */
function previewText(message) {
  if (message.revoked_at) return "[deleted]";
  if (message.text) return message.text.length > 120 ? `${message.text.slice(0, 120)}…` : message.text;
  const first = message.attachments?.[0];
  return first ? `[${first.kind}]` : `[${message.kind || "message"}]`;
}

function summary(message) {
  return h("span", { class: "quote-text" }, previewText(message));
}

/** The body of a message: text, attachments, location, contact cards. */
function content(message) {
  const parts = [];
  if (message.revoked_at) {
    parts.push(h("p", { class: "text deleted" }, "This message was deleted."));
    return parts;
  }
  if (message.kind === "reaction") {
    parts.push(h("p", { class: "text reaction" }, message.text ? `Reacted ${message.text}` : "Removed a reaction"));
    return parts;
  }
  if (message.text) {
    const text = h("p", { class: "text" });
    text.append(linkified(message.text));
    parts.push(text);
  }
  for (const attachment of message.attachments || []) parts.push(renderAttachment(attachment));
  if (message.location) {
    const place = message.location;
    const words = [place.name, place.address, `${place.latitude}, ${place.longitude}`].filter(Boolean).join(" · ");
    const href = safeUrl(place.url) || `https://www.openstreetmap.org/?mlat=${encodeURIComponent(place.latitude)}&mlon=${encodeURIComponent(place.longitude)}`;
    parts.push(h("p", { class: "location" }, "\u{1F4CD} ", link(href, words)));
  }
  for (const card of message.contacts || []) {
    parts.push(h("p", { class: "contact-card" }, `\u{1F464} ${card.name || "Contact"}${card.phones?.length ? `: ${card.phones.join(", ")}` : ""}`));
  }
  if (!parts.length && message.payload) parts.push(h("p", { class: "text" }, `[${message.kind}] ${message.payload}`));
  if (!parts.length) parts.push(h("p", { class: "text empty" }, `[${message.kind || "message"}]`));
  return parts;
}

function renderAttachment(attachment) {
  const kind = attachment.kind || "file";
  const name = attachment.name || attachment.caption || kind;
  const url = safeUrl(attachment.url);
  const box = h("div", { class: `attachment attachment-${kind === "image" || kind === "sticker" ? "image" : "file"}` });
  if ((kind === "image" || kind === "sticker") && url && (url.startsWith("https:") || url.startsWith(location.origin))) {
    const image = h("img", { src: url, alt: attachment.caption || attachment.name || "Image", loading: "lazy", referrerpolicy: "no-referrer" });
    box.append(link(url, image));
  } else if (url) {
    box.append(link(url, `\u{1F4CE} ${name}`));
  } else {
    box.append(h("span", { class: "placeholder", role: "img", "aria-label": `${kind}: ${name}` }, `[${kind}: ${name}]`));
  }
  if (attachment.caption && attachment.caption !== name) box.append(h("p", { class: "caption" }, attachment.caption));
  return box;
}
