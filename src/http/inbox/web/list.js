// The conversation list: newest activity first, a page at a time as the operator scrolls (only
// what is loaded is in the DOM), kept current by the live feed.

import { ApiError, get, query } from "./api.js";
import { $, h, platformMark, platformName, relativeTime, timeElement } from "./dom.js";

const PAGE = 50;
/** Load the next page when the bottom is this close (px). */
const NEAR_BOTTOM = 800;

export class ConversationList {
  /** `onOpen(conversation, {focus})` when the operator opens one. */
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.list = $("conversations");
    this.scroller = $("list-scroll");
    this.status = $("list-status");
    this.filters = { platform: "", unread: false, q: "" };
    this.entries = new Map(); // id -> { conversation, item }
    this.next = null;
    this.loading = false;
    this.generation = 0;
    this.held = null; // events that came while the first page was loading
    this.selectedId = null;
    this.firstPage = null; // resolves when the first page is shown

    this.list.addEventListener("click", (event) => {
      const item = event.target.closest("li[data-id]");
      if (item) this.open(item.dataset.id, false);
    });
    this.list.addEventListener("keydown", (event) => this.onKey(event));
    this.scroller.addEventListener("scroll", () => this.maybeLoadMore(), { passive: true });
    setInterval(() => this.refreshTimes(), 30_000);
  }

  /** The first page's request with the current filters. */
  firstPageRequest(options) {
    const { platform, unread, q } = this.filters;
    return get(`/api/conversations${query({ limit: PAGE, platform, unread: unread && "true", q })}`, options);
  }

  /**
   * The first page asked for ahead of `reload` (at start, together with the session check and
   * the live feed); resolves to null when it failed, and `reload` asks again.
   */
  prefetch() {
    return this.firstPageRequest({ quiet401: true }).catch(() => null);
  }

  /**
   * Empties the list and loads its first page with the current filters (or shows `prefetched`).
   * With `holdUntilRefreshed`, feed events are held after the page is shown until
   * `refreshFirstPage` has run: the page came from before the feed was open.
   */
  reload(prefetched = null, { holdUntilRefreshed = false } = {}) {
    this.generation += 1;
    this.entries.clear();
    this.list.replaceChildren();
    this.next = null;
    this.loading = false;
    this.held = [];
    this.holdUntilRefreshed = holdUntilRefreshed;
    this.firstPage = this.loadPage(null, prefetched);
    return this.firstPage;
  }

  /**
   * Asks for the first page again and applies it, then what the feed brought meanwhile: used
   * when the page shown was asked for before the live feed was open, so that nothing that changed
   * in between is missed (the feed has everything after this page's request).
   */
  async refreshFirstPage() {
    const generation = this.generation;
    let page = null;
    try {
      page = await this.firstPageRequest();
    } catch {
      page = null; // shown as it was; the held events still apply
    }
    if (generation !== this.generation) return;
    this.holdUntilRefreshed = false;
    const held = this.held || [];
    this.held = null;
    for (const conversation of page?.conversations || []) this.place(conversation);
    for (const conversation of held) this.place(conversation);
  }

  setFilters(filters) {
    this.filters = { ...this.filters, ...filters };
    return this.reload();
  }

  async loadPage(before, prefetched = null) {
    const generation = this.generation;
    this.loading = true;
    this.status.textContent = "Loading…";
    const { platform, unread, q } = this.filters;
    let page;
    try {
      page = (prefetched && (await prefetched)) ||
        (await get(`/api/conversations${query({ limit: PAGE, before, platform, unread: unread && "true", q })}`));
    } catch (error) {
      if (generation !== this.generation) return;
      this.loading = false;
      this.status.textContent = error instanceof ApiError ? error.message : "The list could not be loaded.";
      if (before === null) this.releaseHeld();
      return;
    }
    if (generation !== this.generation) return;
    this.loading = false;
    const fragment = document.createDocumentFragment();
    for (const conversation of page.conversations || []) {
      if (this.entries.has(conversation.id)) continue; // moved up by the feed meanwhile: ours is newer
      const item = this.render(conversation);
      this.entries.set(conversation.id, { conversation, item });
      fragment.append(item);
    }
    this.list.append(fragment);
    this.next = page.next ?? null;
    if (before === null) this.releaseHeld();
    this.updateRoving();
    this.updateStatus();
    // A search page may hold few items (or none) and still have more: keep going while the
    // bottom is in sight.
    requestAnimationFrame(() => this.maybeLoadMore());
  }

  releaseHeld() {
    if (this.holdUntilRefreshed) return;
    const held = this.held || [];
    this.held = null;
    for (const conversation of held) this.place(conversation);
  }

  updateStatus() {
    if (this.next !== null) this.status.textContent = "Loading more as you scroll…";
    else if (this.entries.size === 0) this.status.textContent = this.filtered() ? "No conversations match." : "No conversations yet.";
    else this.status.textContent = "";
  }

  filtered() {
    return Boolean(this.filters.platform || this.filters.unread || this.filters.q);
  }

  maybeLoadMore() {
    if (this.loading || this.next === null) return;
    const { scrollTop, scrollHeight, clientHeight } = this.scroller;
    if (scrollHeight - scrollTop - clientHeight < NEAR_BOTTOM) this.loadPage(this.next);
  }

  /** Whether a conversation belongs in the list as it is filtered now. */
  matches(conversation) {
    const { platform, unread, q } = this.filters;
    if (platform && conversation.platform !== platform) return false;
    if (unread && !(conversation.unread > 0) && conversation.id !== this.selectedId) return false;
    if (q) {
      const needle = q.toLowerCase();
      const fields = [conversation.contact_name, conversation.contact_id, conversation.last_message_text];
      if (!fields.some((field) => typeof field === "string" && field.toLowerCase().includes(needle))) return false;
    }
    return true;
  }

  get(id) {
    return this.entries.get(id)?.conversation ?? null;
  }

  /** A conversation as the feed reports it: updated in place, moved to its place, added or dropped. */
  upsert(conversation) {
    if (this.held) {
      this.held.push(conversation);
      return;
    }
    this.place(conversation);
  }

  /** `upsert` now, held or not. */
  place(conversation) {
    const existing = this.entries.get(conversation.id);
    if (!this.matches(conversation)) {
      if (existing) this.remove(conversation.id);
      return;
    }
    const focused = existing && document.activeElement === existing.item;
    const item = this.render(conversation);
    if (existing) existing.item.remove();
    const before = this.firstOlderThan(conversation);
    if (!before && this.next !== null) {
      // Older than everything loaded, and more is still to load: paging will bring it.
      this.entries.delete(conversation.id);
      this.updateRoving();
      return;
    }
    this.list.insertBefore(item, before);
    this.entries.set(conversation.id, { conversation, item });
    if (focused) item.focus();
    this.updateRoving();
    this.updateStatus();
  }

  firstOlderThan(conversation) {
    for (const item of this.list.children) {
      const other = this.entries.get(item.dataset.id)?.conversation;
      if (other && other.id !== conversation.id && activity(other) <= activity(conversation)) return item;
    }
    return null;
  }

  remove(id) {
    const existing = this.entries.get(id);
    if (!existing) return;
    existing.item.remove();
    this.entries.delete(id);
    this.updateRoving();
    this.updateStatus();
  }

  /** Marks `id` as the open conversation. */
  select(id) {
    this.selectedId = id;
    for (const item of this.list.querySelectorAll("li[aria-selected=true]")) item.setAttribute("aria-selected", "false");
    const entry = this.entries.get(id);
    if (entry) entry.item.setAttribute("aria-selected", "true");
    this.updateRoving();
  }

  /** Shown as read at once (the feed's `conversation.updated` confirms it). */
  markedRead(id) {
    const entry = this.entries.get(id);
    if (!entry || !(entry.conversation.unread > 0)) return;
    const conversation = { ...entry.conversation, unread: 0 };
    const focused = document.activeElement === entry.item;
    const item = this.render(conversation);
    entry.item.replaceWith(item);
    this.entries.set(id, { conversation, item });
    this.updateRoving();
    if (focused) item.focus();
  }

  open(id, focusThread) {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.select(id);
    this.onOpen(entry.conversation, { focus: focusThread });
  }

  render(conversation) {
    const name = conversation.contact_name || conversation.contact_id || "Unknown contact";
    const unread = Number(conversation.unread) || 0;
    const at = conversation.last_message_at || conversation.updated_at;
    const preview = conversation.last_message_text || "";
    const label = `${name}, ${platformName(conversation.platform)}${unread ? `, ${unread} unread` : ""}${preview ? `: ${preview}` : ""}`;
    return h(
      "li",
      {
        class: unread ? "conversation unread" : "conversation",
        role: "option",
        tabindex: "-1",
        "data-id": conversation.id,
        "aria-selected": conversation.id === this.selectedId ? "true" : "false",
        "aria-label": label,
      },
      platformMark(conversation.platform),
      h(
        "div",
        { class: "conversation-main" },
        h("div", { class: "conversation-top" }, h("span", { class: "name" }, name), at ? timeElement(at, relativeTime(at), "when") : null),
        h(
          "div",
          { class: "conversation-bottom" },
          h("span", { class: "preview" }, preview),
          unread ? h("span", { class: "badge", "aria-hidden": "true" }, unread > 99 ? "99+" : String(unread)) : null,
        ),
      ),
    );
  }

  refreshTimes() {
    const now = Date.now();
    for (const time of this.list.querySelectorAll("time.when")) time.textContent = relativeTime(time.getAttribute("datetime"), now);
  }

  /** One item of the list is in the tab order: the open one, else the first. */
  updateRoving() {
    const items = this.list.children;
    if (items.length === 0) return;
    const selected = this.entries.get(this.selectedId)?.item;
    const current = this.list.querySelector("li[tabindex='0']");
    const wanted = current && current.isConnected && document.activeElement === current ? current : selected || items[0];
    if (current && current !== wanted) current.setAttribute("tabindex", "-1");
    wanted.setAttribute("tabindex", "0");
  }

  focusItem(item) {
    if (!item) return;
    for (const other of this.list.querySelectorAll("li[tabindex='0']")) other.setAttribute("tabindex", "-1");
    item.setAttribute("tabindex", "0");
    item.focus();
    item.scrollIntoView({ block: "nearest" });
    this.maybeLoadMore();
  }

  /** Focus on the list (its current item). */
  focus() {
    const item = this.list.querySelector("li[tabindex='0']") || this.list.firstElementChild;
    if (item) item.focus();
  }

  onKey(event) {
    const item = event.target.closest("li[data-id]");
    if (!item) return;
    switch (event.key) {
      case "ArrowDown":
        this.focusItem(item.nextElementSibling);
        break;
      case "ArrowUp":
        this.focusItem(item.previousElementSibling);
        break;
      case "Home":
        this.focusItem(this.list.firstElementChild);
        break;
      case "End":
        this.focusItem(this.list.lastElementChild);
        break;
      case "Enter":
      case " ":
        this.open(item.dataset.id, true);
        break;
      default:
        return;
    }
    event.preventDefault();
  }
}

/** What orders the list: the latest activity of any kind. */
function activity(conversation) {
  return Date.parse(conversation.updated_at || conversation.last_message_at || 0) || 0;
}
